"""Inference settings."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import RunSettings, option


@dataclass
class InferConfig(RunSettings):
    data_dir: str = option("", "Folder with test.csv and test/<Id>.jpg (training data not needed).", group="data",
                           required=True)
    runs: str = option("", "Ensemble of several runs with identical folds, e.g. 'swin,convnext' (default: --run); "
                       "each contributes its NN and its SVR head.")
    blend: str = option("0.5", "Weight of the NN head(s): final = blend x mean NN + (1 - blend) x mean SVR, in [0, 1]; "
                        "'auto' fits on OOF: one run, the NN weight with the lowest OOF RMSE (step 0.01); several "
                        "runs, one weight per head (>= 0, summing to 1; scipy SLSQP).")
    weights_from: str = option("", "Replay an ensemble.json written by an earlier infer (its runs, head weights and "
                               "TTA; --blend and --tta are then ignored, --runs must match): no OOF files needed, e.g. "
                               "in a Kaggle notebook.")
    tta: bool = option(False, "Horizontal-flip test-time augmentation, applied to both heads alike.")
    out: str = option("", "Submission path (default: <artifacts-dir>/<run>/submission.csv; several runs: "
                      "<artifacts-dir>/ensembles/<run1+run2>/submission.csv); report, plots and ensemble.json go "
                      "beside it.")
    cache_dir: str = option("", "Where decoded test images and their embeddings are cached (default: "
                            "<artifacts-dir>/cache when writable, else a cache/ folder beside --out). Nothing "
                            "is ever written under read-only artifacts.")
    batch_size: int = option(64, "Batch size for the test images.")
    device: str = option("auto", "auto (cuda if present), cpu, cuda, ...")
    num_workers: int = option(0, "DataLoader workers.")
    allow_partial: bool = option(False, "Submit from a stage 1 with folds missing (said in report.md); by default "
                                 "that is an error naming the missing folds.")
