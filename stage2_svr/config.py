"""Stage-2 settings, saved resolved beside each fold's SVR."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import option

from .backends import BACKENDS


@dataclass
class SVRConfig:
    data_dir: str = option("", "Competition layout; default: the data dir stage 1 was trained on.")
    artifacts_dir: str = option("artifacts", "Root of all outputs.")
    run: str = option("default", "Run name (the stage-1 run to build on).")
    svr_backend: str = option("auto", "auto = cuML if it imports and a CUDA GPU is present, else "
                              "scikit-learn-intelex if installed, else scikit-learn.", choices=BACKENDS)
    kernel: str = option("rbf", "SVR kernel.", choices=("rbf", "linear", "poly", "sigmoid"))
    C: float = option(20.0, "SVR regularisation C.")
    epsilon: float = option(0.1, "SVR epsilon-tube width, in Pawpularity points.")
    gamma: str = option("scale", "Kernel coefficient: 'scale', 'auto' or a number.")
    standardize: bool = option(True, "Standardise features with a scaler fitted on each fold's train rows.")
    use_meta: bool = option(False, "Append the 12 metadata flags to the embeddings.")
    batch_size: int = option(64, "Batch size for embedding extraction.")
    device: str = option("auto", "Embedding extraction device: auto (cuda if present), cpu, cuda, cuda:1 ...")
    num_workers: int = option(0, "DataLoader workers for embedding extraction.")
    allow_partial: bool = option(False, "Go on when stage 1 has folds missing (recorded in the manifest); by "
                                 "default that is an error naming the missing folds.")
