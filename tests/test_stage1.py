"""Stage 1 end to end on tiny generated data: artifacts, manifest, and a reload that reproduces the OOF."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pawcore.artifacts import sha256_file
from pawcore.config import parse_folds
from pawcore.errors import ConfigError
from pawcore.images import cached_images
from pawcore.data import read_split
from pawcore.run import run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.config import TrainConfig
from stage1_backbone.model import load_fold_model
from stage1_backbone.predict import embed_and_score
from stage1_backbone.train import train_backbone

from .conftest import TINY


def test_stage1_artifacts_and_manifest(tiny_run, tiny_data):
    run = run_dir(tiny_run, "default")
    manifest = Stage1Manifest.load(run)   # also re-checks every file's hash
    assert sorted(manifest.folds) == [0, 1]
    assert manifest.model["feature_dim"] == 256 and manifest.img_size == 32
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str})
    train = pd.read_csv(tiny_data / "train.csv", dtype={"Id": str})
    assert sorted(oof["Id"]) == sorted(train["Id"]) and list(oof.columns) == ["Id", "fold", "target", "pred"]
    assert oof["pred"].between(0, 100).all()
    folds = pd.read_csv(run.folds_csv, dtype={"Id": str}).set_index("Id")
    assert (folds.loc[oof["Id"], "fold"].to_numpy() == oof["fold"].to_numpy()).all()
    for k in (0, 1):
        fold_dir = Stage1Manifest.fold_dir(run, k)
        epochs = pd.read_csv(fold_dir / "logs" / "metrics.csv").dropna(subset=["val_rmse"])
        assert len(epochs) == TINY["epochs"]
        done = json.loads((fold_dir / "done.json").read_text())
        assert done["val_rmse"] == pytest.approx(epochs["val_rmse"].min(), rel=1e-5)
        # The OOF file's RMSE is the best epoch's val RMSE: the saved weights are the best epoch's.
        assert done["oof_rmse"] == pytest.approx(done["val_rmse"], rel=1e-3)
        assert not (fold_dir / "checkpoints").exists()


def test_reload_fold_from_saved_config_reproduces_oof(tiny_run, tiny_data):
    run = run_dir(tiny_run, "default")
    config = json.loads(Stage1Manifest.fold_config_file(run, 1).read_text())
    assert config["train"]["backbone"] == "test_efficientnet"
    model = load_fold_model(config["model"], Stage1Manifest.weights_file(run, 1))
    train = read_split(tiny_data, "train")
    pixels = cached_images(train.image_paths, config["model"]["img_size"], run.image_cache, "train")
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str}).query("fold == 1")
    rows = np.array([train.ids.index(i) for i in oof["Id"]])
    _, scores = embed_and_score(model, pixels, rows, device="cpu")
    np.testing.assert_allclose(scores.numpy(), oof["pred"].to_numpy(), atol=1e-4)


def test_subset_of_folds_and_manifest_of_finished_folds(tiny_data, tmp_path):
    cfg = TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 1}, folds="1")
    table = train_backbone(cfg)
    run = run_dir(tmp_path, "default")
    assert sorted(Stage1Manifest.load(run).folds) == [1]
    assert not Stage1Manifest.fold_dir(run, 0).exists()
    assert list(table["fold"]) == ["1", "overall"]
    folds_sha = sha256_file(run.folds_csv)
    train_backbone(TrainConfig(**{**cfg.__dict__, "folds": "0"}))
    assert sorted(Stage1Manifest.load(run).folds) == [0, 1]
    assert sha256_file(run.folds_csv) == folds_sha, "folds.csv is made once per run"


def test_same_seed_same_oof(tiny_data, tmp_path):
    cfg = dict(data_dir=str(tiny_data), **{**TINY, "epochs": 1}, folds="0")
    train_backbone(TrainConfig(artifacts_dir=str(tmp_path / "a"), **cfg))
    train_backbone(TrainConfig(artifacts_dir=str(tmp_path / "b"), **cfg))
    a = pd.read_csv(tmp_path / "a/default/stage1/oof_nn.csv")
    b = pd.read_csv(tmp_path / "b/default/stage1/oof_nn.csv")
    pd.testing.assert_frame_equal(a, b)


def test_bad_options_fail_before_any_work(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="not a timm model"):
        train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), backbone="nope_net"))
    with pytest.raises(ConfigError, match="No offline ImageNet weights for --backbone 'resnet18'"):
        train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), backbone="resnet18"))
    with pytest.raises(ConfigError, match=r"fold\(s\) \[7\] out of range"):
        parse_folds("0,7", 5)
    assert not any(tmp_path.iterdir()), "nothing written for a bad option"


def test_use_meta_feeds_the_head(tiny_data, tmp_path):
    """Catches a head that drops the 12 flags (or gets zeros) and an OOF scored without them: the trained
    fold model must reproduce its OOF with the real flags only, and score differently with them zeroed."""
    cfg = TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 1},
                      folds="0", use_meta=True)
    train_backbone(cfg)
    run = run_dir(tmp_path, "default")
    manifest = Stage1Manifest.load(run)
    assert manifest.model["n_meta"] == 12 and "Near" in manifest.model["meta_cols"]
    model = manifest.fold_model(0)
    train = read_split(tiny_data, "train", require_meta=True)
    pixels = cached_images(train.image_paths, manifest.img_size, run.image_cache, "train")
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str})
    rows = np.array([train.ids.index(i) for i in oof["Id"]])
    meta = train.meta()
    assert np.ptp(meta[rows], axis=0).max() > 0  # the flags vary over these rows
    _, real = embed_and_score(model, pixels, rows, meta=meta, device="cpu")
    _, zeroed = embed_and_score(model, pixels, rows, meta=np.zeros_like(meta), device="cpu")
    np.testing.assert_allclose(real.numpy(), oof["pred"].to_numpy(), atol=1e-4)
    assert np.abs(real.numpy() - zeroed.numpy()).max() > 1e-3, "zeroing the flags must change the scores"


def test_checkpoint_last_keeps_the_last_epoch_without_early_stopping(tiny_data, tmp_path):
    # patience 1 would stop a `best` run as soon as val RMSE fails to improve once; `last` never stops early.
    cfg = TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 3, "patience": 1},
                      folds="0", checkpoint="last")
    train_backbone(cfg)
    run = run_dir(tmp_path, "default")
    epochs = pd.read_csv(Stage1Manifest.fold_dir(run, 0) / "logs" / "metrics.csv").dropna(subset=["val_rmse"])
    assert len(epochs) == 3
    done = json.loads(Stage1Manifest.done_file(run, 0).read_text())
    assert done["checkpoint"] == "last" and done["val_rmse"] == pytest.approx(epochs["val_rmse"].iloc[-1], rel=1e-5)
    # The saved weights are the last epoch's: their OOF RMSE is that epoch's val RMSE.
    assert done["oof_rmse"] == pytest.approx(epochs["val_rmse"].iloc[-1], rel=1e-3)
    assert Stage1Manifest.load(run).checkpoint == "last"
