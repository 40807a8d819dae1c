"""Shared fixtures: a tiny generated dataset and one tiny trained run (stage 1 + stage 2) per session.

Tiny settings keep the whole suite on a 2-core CPU in a few minutes: timm's `test_efficientnet`
(random init), 32 px, 2 folds, 2 epochs. Tests that change artifacts work on a copy.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from workflows.synthetic import make_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OXFORD = SHARED_DATA / "oxford-pets-370"
REAL_LABELS = SHARED_DATA / "pawpularity-train-labels.csv"

TINY = dict(backbone="test_efficientnet", pretrained="none", img_size=32, n_folds=2, epochs=2,
            batch_size=8, num_workers=0, seed=7)


def needs_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"reference data {path} absent (present in CI)")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=24, n_test=8, seed=1, min_side=40, max_side=90)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """artifacts dir holding run 'default' with stage 1 and stage 2 finished (do not modify: copy)."""
    art = tmp_path_factory.mktemp("artifacts")
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(art), **TINY))
    # The fine-tuned source alone keeps these tests fast; the frozen bank has its own (tests/test_bank.py).
    fit_svr(SVRConfig(artifacts_dir=str(art), svr_backend="sklearn", features="tuned", select="none",
                      standardize=True))
    return art


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "artifacts"
    shutil.copytree(tiny_run, dst)
    return dst


@pytest.fixture
def count_passes(monkeypatch):
    """The number of images of each frozen model's pass through the feature bank (fine-tuned passes are
    not counted)."""
    from stage2_svr import bank as bank_module
    from stage2_svr.frozen import frozen_step

    calls = []
    real = bank_module.forward_batches

    def counting(model, step, pixels, *args, **kwargs):
        if step is frozen_step:
            calls.append(len(pixels))
        return real(model, step, pixels, *args, **kwargs)

    monkeypatch.setattr(bank_module, "forward_batches", counting)
    return calls
