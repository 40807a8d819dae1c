"""--logger: the CSV log always; TensorBoard (or W&B, MLflow) through Lightning when asked and installed."""
from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from pawcore.errors import ConfigError
from stage1_backbone.config import TrainConfig
from stage1_backbone.loggers import check_logger
from stage1_backbone.train import train_backbone

from .conftest import TINY


def test_tensorboard_logger_writes_events_beside_the_csv_log(tiny_data, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is a dev dependency; install it to run this test")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), logger="tensorboard",
                               **{**TINY, "folds": "0"}))
    fold = tmp_path / "default/stage1/fold0"
    csv = pd.read_csv(fold / "logs/metrics.csv")
    events = EventAccumulator(str(fold / "tensorboard")).Reload()
    val = [e.value for e in events.Scalars("val_rmse")]
    assert len(val) == TINY["epochs"] == csv["val_rmse"].notna().sum()
    assert val == pytest.approx(csv["val_rmse"].dropna().tolist(), rel=1e-6)   # same numbers in both logs


def test_missing_logger_package_is_a_clear_error_before_any_work(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--logger wandb needs the 'wandb' package.*pip install wandb"):
        check_logger("wandb")
    check_logger("csv")
