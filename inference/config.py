"""Inference settings."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import option


@dataclass
class InferConfig:
    data_dir: str = option("", "Folder with test.csv and test/<Id>.jpg (training data not needed).")
    artifacts_dir: str = option("artifacts", "Root of all outputs.")
    run: str = option("default", "Run whose stage-1 and stage-2 artifacts to use.")
    blend: str = option("0.5", "Weight of the NN head: final = blend x NN + (1 - blend) x SVR, in [0, 1]; "
                        "'auto' picks the weight with the lowest OOF RMSE (step 0.01).")
    tta: bool = option(False, "Horizontal-flip test-time augmentation, applied to both heads alike.")
    out: str = option("", "Submission path (default: <artifacts-dir>/<run>/submission.csv); report and plots "
                      "go beside it.")
    cache_dir: str = option("", "Where decoded test images and their embeddings are cached (default: "
                            "<artifacts-dir>/cache when writable, else a cache/ folder beside --out). Nothing "
                            "is ever written under read-only artifacts.")
    batch_size: int = option(64, "Batch size for the test images.")
    device: str = option("auto", "auto (cuda if present), cpu, cuda, ...")
    num_workers: int = option(0, "DataLoader workers.")
    allow_partial: bool = option(False, "Submit from a stage 1 with folds missing (said in report.md); by default "
                                 "that is an error naming the missing folds.")
