"""Experiment loggers for stage 1: Lightning's own, chosen with --logger.

The CSV log (<fold>/logs/metrics.csv) is always written: resume and the epoch table read it. TensorBoard,
Weights & Biases and MLflow are added on request, only when their package is installed.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger

from pawcore.errors import ConfigError

# The package each logger needs (TensorBoard also works with tensorboardX).
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_logger(name: str) -> None:
    """Fail before any work if the chosen logger's package is missing."""
    needed = PACKAGES.get(name, ())
    if needed and not any(importlib.util.find_spec(pkg) for pkg in needed):
        raise ConfigError(f"--logger {name} needs the {needed[0]!r} package, which is not installed. "
                          f"Run `pip install {needed[0]}`, or use --logger csv.")


def fold_loggers(name: str, fold_dir: Path, run: str, k: int) -> list[Logger]:
    """[CSV logger, the chosen one if any]: the CSV one first, so trainer.log_dir stays <fold>/logs."""
    loggers: list[Logger] = [CSVLogger(fold_dir, name="", version="logs")]
    if name == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(fold_dir, name="", version="tensorboard", default_hp_metric=False))
    elif name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        loggers.append(WandbLogger(project="pawpularity", name=f"{run}-fold{k}", group=run, save_dir=str(fold_dir)))
    elif name == "mlflow":
        from pytorch_lightning.loggers import MLFlowLogger

        # MLFLOW_TRACKING_URI wins when set; otherwise a local store in the run's folder.
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{fold_dir.parent.parent / 'mlruns'}"
        loggers.append(MLFlowLogger(experiment_name=run, run_name=f"fold{k}", tracking_uri=uri))
    return loggers
