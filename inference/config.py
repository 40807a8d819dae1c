"""Inference settings."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import DataOptions, DeviceOptions, LoaderOptions, RunSettings, check_option, option, override
from pawcore.views import TTA, tta_value


def infer_tta_value(text: str) -> str | None:
    """--tta: run (each run's own views), or views as train-backbone's --tta takes them."""
    return None if text == "run" else tta_value(text)


def blend_value(text: str) -> str | None:
    """'auto', or the NN head's weight in [0, 1]."""
    if text.strip().lower() == "auto":
        return None
    try:
        weight = float(text)
    except ValueError:
        return "give the NN head's weight in [0, 1], or 'auto'"
    return None if 0.0 <= weight <= 1.0 else "must lie in [0, 1] (0 = SVR only, 1 = NN only), or be 'auto'"


def parse_blend(text: str) -> float | None:
    """--blend: 'auto' -> None (choose on OOF); a number must lie in [0, 1] (a ConfigError otherwise)."""
    text = check_option(InferConfig, "blend", text)
    return None if text.strip().lower() == "auto" else float(text)


@dataclass
class InferConfig(LoaderOptions, DeviceOptions, RunSettings):
    data_dir: str = override(DataOptions, "data_dir", required=True,
                             help="Folder with test.csv and test/<Id>.jpg (training data not needed).")
    runs: str = option("", "Ensemble of several runs with identical folds, e.g. 'swin,convnext' (default: --run); "
                       "each contributes its NN and its SVR head.")
    blend: str = option("0.5", "Weight of the NN head(s): final = blend x mean NN + (1 - blend) x mean stage-2 "
                        "head(s) (SVR, and GBDT if fitted, in equal shares), in [0, 1]; "
                        "'auto' fits on OOF: one run, the NN weight with the lowest OOF RMSE (step 0.01); several "
                        "runs, one weight per head (>= 0, summing to 1; scipy SLSQP).", check=blend_value)
    weights_from: str = option("", "Replay an ensemble.json written by an earlier infer (its runs, head weights and "
                               "test-time views; --blend is then ignored, --tta and --runs must match): no OOF files needed, e.g. "
                               "in a Kaggle notebook.")
    tta: str = option("run", "Test-time views every head averages over, besides the photo itself: run = the views "
                      "the run was trained with (train-backbone --tta, which its OOF and so --blend auto used), "
                      f"none, or comma-separated from {', '.join(TTA)}. --tta alone means flip.",
                      check=infer_tta_value, metavar="VIEWS", bare="flip")
    out: str = option("", "Submission path (default: <artifacts-dir>/<run>/submission.csv; several runs: "
                      "<artifacts-dir>/ensembles/<run1+run2>/submission.csv); report, plots and ensemble.json go "
                      "beside it.")
    cache_dir: str = option("", "Where decoded test images and their embeddings are cached (default: "
                            "<artifacts-dir>/cache when writable, else a cache/ folder beside --out). Nothing "
                            "is ever written under read-only artifacts.")
    allow_partial: bool = option(False, "Submit from a stage 1 with folds missing (said in report.md); by default "
                                 "that is an error naming the missing folds.")

    def __post_init__(self) -> None:
        if isinstance(self.tta, bool):  # `tta: true` in YAML or code from when the flip was the only view
            self.tta = "flip" if self.tta else "none"
        super().__post_init__()

    @property
    def blend_weight(self) -> float | None:
        """--blend as a number, or None for 'auto' (already checked when the config was built)."""
        return parse_blend(self.blend)
