"""A tiny finished run with a submission (blend 0.3, TTA on), so score/serve have an ensemble.json to replay."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from inference.config import InferConfig
from inference.infer import infer


@pytest.fixture(scope="session")
def advice_run(tiny_run, tiny_data, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """(artifacts dir holding run 'default' + its ensemble.json, the submission infer wrote)."""
    art = tmp_path_factory.mktemp("advice") / "artifacts"
    shutil.copytree(tiny_run, art)
    # Not the defaults, so a score that ignored ensemble.json (blend 0.5, no TTA) would not match.
    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(art), blend="0.3", tta=True))
    return art, sub


@pytest.fixture(scope="session")
def test_photos(tiny_data) -> list[Path]:
    return sorted((tiny_data / "test").glob("*.jpg"))
