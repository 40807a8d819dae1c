"""One photo, the same numbers in every stage: SVR features, preprocessing, the model's input size."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from timm.models import register_model
from timm.models.swin_transformer import _create_swin_transformer

from inference.config import InferConfig
from inference.infer import infer
from inference.predictor import RunPredictor
from pawcore.errors import ConfigError
from pawcore.data import read_split
from pawcore.images import SplitImages, cached_images
from pawcore.run import run_dir
from stage1_backbone.config import TrainConfig
from stage1_backbone.model import PawpularityNet, load_fold_model
from stage1_backbone.predict import embed_and_score
from stage1_backbone.pretrained import create_backbone
from stage1_backbone.train import normalisation, train_backbone
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.manifest import Stage2Manifest

from .conftest import TINY


def test_infer_replays_fit_svr_oof_from_the_photos(tiny_run, tiny_data):
    """fit-svr's OOF, replayed by infer's own code path from the training photos with every feature
    recomputed (no feature cache), to 1e-6. Breaks if infer assembles the head's input differently from
    fit-svr (source order, scaler, preprocessing, a feature computed on other pixels), or if the features
    fit-svr computed where it ran (device auto: the GPU when there is one) differ from a CPU's."""
    run = run_dir(tiny_run, "default")
    predictor = RunPredictor(run, device="cpu", cache_dir=None)
    train = read_split(tiny_data, "train")
    bank = predictor.bank(SplitImages(train.image_paths, run.image_cache, "train"))
    oof = pd.read_csv(Stage2Manifest.oof_file(run), dtype={"Id": str})
    for k in predictor.folds:
        fitted_on = np.load(next((tiny_run / "features").glob(f"tuned-fold{k}-*-emb-[0-9a-f]*.npy")))
        np.testing.assert_allclose(bank.tuned(k), fitted_on, rtol=1e-5, atol=1e-5)
        val = oof[oof["fold"] == k]
        rows = np.array([train.ids.index(i) for i in val["Id"]])
        svr = predictor.fold_heads(bank, k)["svr"]
        np.testing.assert_allclose(svr[rows], val["pred"].to_numpy(), rtol=0, atol=1e-6)


def _reload_reproduces_oof(art, data, fold: int) -> None:
    run = run_dir(art, "default")
    config = json.loads(Stage1Manifest.fold_config_file(run, fold).read_text())["model"]
    model = load_fold_model(config, Stage1Manifest.weights_file(run, fold))
    train = read_split(data, "train")
    pixels = cached_images(train.image_paths, config["img_size"], run.image_cache, "train")
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str}).query("fold == @fold")
    _, scores = embed_and_score(model, pixels, np.array([train.ids.index(i) for i in oof["Id"]]), device="cpu")
    np.testing.assert_allclose(scores.numpy(), oof["pred"].to_numpy(), atol=1e-4)


def test_preprocessing_comes_from_the_saved_config_not_todays_timm(tiny_run, tiny_data, monkeypatch):
    """Another timm version (or another default pretrained_cfg) must not change how a saved fold is fed."""
    monkeypatch.setattr(timm.data, "resolve_model_data_config",
                        lambda model, **kw: {"mean": (0.1, 0.2, 0.3), "std": (0.9, 0.8, 0.7),
                                             "input_size": (3, 999, 999), "interpolation": "nearest"})
    _reload_reproduces_oof(tiny_run, tiny_data, fold=1)


def test_mean_and_std_options_are_used_saved_and_reloaded(tiny_data, tmp_path):
    mean, std = "0.2,0.3,0.4", "0.5,0.6,0.7"
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 1},
                               folds="0", mean=mean, std=std))
    config = json.loads((tmp_path / "default/stage1/fold0/config.json").read_text())["model"]
    np.testing.assert_allclose(config["mean"], [0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(config["std"], [0.5, 0.6, 0.7], rtol=1e-6)
    assert config["input_size"] == [3, 32, 32] and config["interpolation"] == "area"
    _reload_reproduces_oof(tmp_path, tiny_data, fold=0)
    with pytest.raises(ConfigError, match="--std '0.5,0,0.7': give 3 comma-separated numbers"):
        train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path / "bad"), std="0.5,0,0.7"))


def test_weights_file_with_its_pretrained_cfg_sets_the_normalisation(tmp_path):
    """timm's hub layout (weights + config.json with pretrained_cfg), as in a Kaggle dataset of them."""
    torch.save(create_backbone("test_efficientnet", "none").state_dict(), tmp_path / "weights.pth")
    (tmp_path / "config.json").write_text(json.dumps({"pretrained_cfg": {"mean": [0.48, 0.45, 0.4],
                                                                         "std": [0.27, 0.26, 0.28]}}))
    cfg = TrainConfig(backbone="test_efficientnet", pretrained_file=str(tmp_path / "weights.pth"))
    assert normalisation(cfg) == ([0.48, 0.45, 0.4], [0.27, 0.26, 0.28])
    assert normalisation(TrainConfig(**{**cfg.__dict__, "mean": "0.5,0.5,0.5"}))[0] == [0.5, 0.5, 0.5]
    assert normalisation(TrainConfig(backbone="test_efficientnet")) == (None, None)  # timm's own, at training


# A Swin small enough for a test, built by timm's own Swin code (timm ships no test_swin).
@register_model
def pawtest_swin(pretrained=False, **kwargs):
    return _create_swin_transformer("swin_tiny_patch4_window7_224", pretrained, embed_dim=16, depths=(1, 1),
                                    num_heads=(1, 2), window_size=4, **kwargs)


@pytest.mark.parametrize("backbone", ["vit_tiny_patch16_224", "pawtest_swin"])
def test_transformers_at_a_non_native_size_end_to_end(backbone, tiny_data, tmp_path):
    """ViT and Swin are built for 224 px; at --img-size 48 their first forward failed (img_size was not
    passed to timm). Weights made for 224 px are resampled by timm's checkpoint filter on loading."""
    native = timm.create_model(backbone, pretrained=False, num_classes=0)
    assert native.pretrained_cfg["input_size"] == (3, 224, 224)
    torch.save(native.state_dict(), tmp_path / "native.pth")
    art = str(tmp_path / "art")
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=art,
                               **{**TINY, "backbone": backbone, "img_size": 48, "epochs": 1},
                               pretrained_file=str(tmp_path / "native.pth")))
    fit_svr(SVRConfig(artifacts_dir=art, svr_backend="sklearn"))
    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=art, blend="0.5"))
    assert len(sub) == 8 and sub["Pawpularity"].between(1, 100).all()
    _reload_reproduces_oof(art, tiny_data, fold=0)


def test_svr_features_are_plain_fp32_even_inside_a_caller_s_autocast(tmp_path):
    """The fit-svr machine may run with mixed precision on (a GPU's bf16 autocast, TF32); the infer machine
    often has none. The passes that feed the SVR (fine-tuned and frozen) turn it off themselves: inside a
    bf16 autocast their features equal the plain fp32 ones. A pass that inherited the autocast would give
    bf16-rounded features here (CPU autocast stands in for the GPU's; TF32 cannot be shown on a CPU)."""
    from stage1_backbone.predict import forward_batches
    from stage2_svr.frozen import FrozenNet, frozen_step

    pixels = np.random.default_rng(4).integers(0, 256, size=(4, 48, 48, 3), dtype=np.uint8)
    torch.manual_seed(0)
    tuned = PawpularityNet(create_backbone("test_efficientnet", "none"))
    frozen = FrozenNet(timm.create_model("test_efficientnet", num_classes=10))
    cpu = torch.device("cpu")
    plain = (embed_and_score(tuned, pixels, device=cpu)[0], forward_batches(frozen, frozen_step, pixels, device=cpu)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = (embed_and_score(tuned, pixels, device=cpu)[0],
                 forward_batches(frozen, frozen_step, pixels, device=cpu)[0])
    for a, b in zip(plain, mixed):
        assert b.dtype in (torch.float32, np.float32)
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
