"""Resize modes and test-time views: declared once, recorded with the run, the same pixels in every stage."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from advice.photos import PhotoImages, read_photos
from advice.score import photo_ensemble, score_photos
from inference.config import InferConfig
from inference.ensemble import EnsembleSpec
from inference.infer import infer
from inference.predictor import RunPredictor
from pawcore.data import read_split
from pawcore.errors import ArtifactError
from pawcore.images import ArrayImages, SplitImages, load_rgb, resize_square
from pawcore.run import run_dir
from pawcore.views import parse_tta, tta_views
from stage1_backbone.config import TrainConfig
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.predict import embed_and_score, view_batch
from stage1_backbone.train import train_backbone
from stage2_svr.bank import FeatureBank
from stage2_svr.sources import parse_source
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.manifest import Stage2Manifest

from .conftest import TINY

SIZE = 32


def _landscape(path: Path) -> Path:
    """A 90 x 50 JPEG whose left, centre and right thirds differ, so each mode gives other pixels."""
    rgb = np.zeros((50, 90, 3), np.uint8)
    rgb[:, :30] = (200, 30, 30)
    rgb[:, 30:60] = (30, 200, 30)
    rgb[:, 60:] = (30, 30, 200)
    rgb[10:40, 40:50] = 255
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.mark.parametrize("mode", ["squash", "pad", "crop"])
def test_each_resize_mode_gives_the_same_pixels_at_fit_svr_infer_and_score(mode, tmp_path):
    """Catches a stage that resizes another way than the others: the image cache (training, fit-svr, infer,
    via the feature bank, which must pass the run's mode), a photo scored by `score`/`serve`, and photos
    held in memory (the crop search). One photo, the same pixels everywhere, in every mode."""
    photo_path = _landscape(tmp_path / "p.jpg")
    run = SimpleNamespace(resize=mode, fold_model=lambda k: None)  # the bank needs only the run's resize mode here
    tuned = parse_source("tuned")

    def bank_pixels(images):  # what the bank feeds a source: its pixels in the mode it gives that source
        bank = FeatureBank(run, images, None)
        return bank._pixels(SIZE, bank.resize_of(tuned))

    cached = bank_pixels(SplitImages([photo_path], tmp_path / "cache", "train"))
    assert isinstance(cached, np.memmap) and (f"-{mode}-" in Path(cached.filename).name) == (mode != "squash")
    (photo,) = read_photos([photo_path])
    scored = bank_pixels(PhotoImages([photo]))
    in_memory = ArrayImages([load_rgb(photo_path)]).pixels(SIZE, mode)
    np.testing.assert_array_equal(scored, cached)
    np.testing.assert_array_equal(in_memory, cached)

    rgb = load_rgb(photo_path)
    expected = {"squash": cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA),
                "crop": cv2.resize(rgb[:, 20:70], (SIZE, SIZE), interpolation=cv2.INTER_AREA)}
    if mode in expected:
        np.testing.assert_array_equal(cached[0], expected[mode])
    else:  # pad: the whole photo 32 x 18, centred on black (7 rows above, 7 below)
        assert not cached[0, :7].any() and not cached[0, -7:].any() and cached[0, 7:25].min(axis=2).max() > 100
        np.testing.assert_array_equal(cached[0, 7:25], cv2.resize(rgb, (SIZE, 18), interpolation=cv2.INTER_AREA))
    square = rgb[:, :50]
    assert all(np.array_equal(resize_square(square, SIZE, m), resize_square(square, SIZE)) for m in ("pad", "crop"))


def test_views_are_named_once_and_made_from_the_model_input():
    """Catches a view that is not what its name says (a zoom that does not scale back up, a crop from the
    wrong corner, a flip of the other axis) and unknown or repeated names getting through."""
    assert tta_views(parse_tta("crops,flip")) == ("", "flip", "crop-tl", "crop-tr", "crop-bl", "crop-br")
    assert parse_tta("none") == () == parse_tta("") and parse_tta(True) == ("flip",) and parse_tta(False) == ()
    for bad, words in (("flop", "unknown view(s) ['flop']"), ("flip,flip", "names a view twice")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            parse_tta(bad)
    images = torch.arange(256).to(torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    assert torch.equal(view_batch(images, ""), images)
    assert torch.equal(view_batch(images, "flip"), torch.flip(images, dims=[3]))
    for view in ("zoom", "crop-tl", "crop-br"):
        out = view_batch(images, view)
        assert out.shape == images.shape and out.dtype == torch.uint8
    # 7/8 of 16 pixels = 14: the top-left crop starts at pixel 0, the bottom-right one ends at the last pixel,
    # the zoom is centred (1 pixel off each side).
    assert view_batch(images, "crop-tl")[0, 0, 0, 0] == 0 and view_batch(images, "crop-br")[0, 0, -1, -1] == 255
    assert not torch.equal(view_batch(images, "zoom"), images) and view_batch(images, "zoom")[0, 0, 0, 0] > 0


@pytest.fixture(scope="module")
def padded_tta_run(tiny_data, tmp_path_factory) -> Path:
    """A tiny run trained with --resize pad --tta flip,zoom, then fit-svr (tuned source only)."""
    art = tmp_path_factory.mktemp("padded")
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(art), **{**TINY, "epochs": 1},
                               resize="pad", tta="zoom,flip"))
    fit_svr(SVRConfig(artifacts_dir=str(art), svr_backend="sklearn", features="tuned", select="none",
                      standardize=True))
    return art


def test_resize_and_views_come_from_the_saved_config_in_every_stage(padded_tta_run, tiny_data):
    """Catches a later stage that uses today's defaults (squash, no views) instead of the run's: stage 1's
    NN OOF and fit-svr's SVR OOF must both be the mean over the run's views of the padded photos, which
    infer's own code path (recomputing every feature) must reproduce."""
    run = run_dir(padded_tta_run, "default")
    stage1 = Stage1Manifest.load(run)
    assert (stage1.resize, stage1.tta) == ("pad", ("flip", "zoom"))
    views = tta_views(stage1.tta)
    train = read_split(tiny_data, "train")
    pixels = train.pixels(stage1.img_size, run.image_cache, "pad")
    nn_oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str})
    svr_oof = pd.read_csv(Stage2Manifest.oof_file(run), dtype={"Id": str})
    predictor = RunPredictor(run, device="cpu", cache_dir=None)
    assert predictor.resize == "pad"
    bank = predictor.bank(SplitImages(train.image_paths, run.image_cache, "train"))
    for k in predictor.folds:
        rows = np.array([train.ids.index(i) for i in nn_oof.query("fold == @k")["Id"]])
        model = stage1.fold_model(k)
        nn = np.mean([embed_and_score(model, pixels, rows, device="cpu", view=v)[1].numpy() for v in views], axis=0)
        np.testing.assert_allclose(nn, nn_oof.query("fold == @k")["pred"], atol=1e-4)
        plain = embed_and_score(model, pixels, rows, device="cpu")[1].numpy()
        assert np.abs(plain - nn).max() > 1e-4, "the views change the scores, so the check above means something"
        replayed = predictor.fold_heads(bank, k, views)
        nn_replayed, svr_replayed = replayed["nn"], replayed["svr"]
        val = svr_oof.query("fold == @k")
        svr_rows = np.array([train.ids.index(i) for i in val["Id"]])
        np.testing.assert_allclose(svr_replayed[svr_rows], val["pred"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(nn_replayed[rows], nn, atol=1e-4)


def test_infer_and_score_replay_the_run_s_views(padded_tta_run, tiny_data, tmp_path):
    """Catches infer or score scoring test photos on other views or pixels than the run's OOF: infer's
    default --tta run takes the run's views and records them in ensemble.json; `score` on the test photos
    (decoded in memory, padded as the run says) gives the submission's scores; features of each view are
    cached under their own name."""
    out = tmp_path / "sub.csv"
    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(padded_tta_run), blend="0.5", out=str(out),
                            cache_dir=str(tmp_path / "cache")))
    spec = EnsembleSpec.load(tmp_path / "ensemble.json")
    assert spec.tta == ["flip", "zoom"]
    cached = {p.name.split("-emb")[1].split("-")[1] for p in (tmp_path / "cache/features").glob("tuned-fold0-*-emb-*.npy")}
    assert {"flip", "zoom"} <= cached
    test = read_split(tiny_data, "test")
    ensemble = photo_ensemble(padded_tta_run, "default", tmp_path / "ensemble.json", device="cpu")
    scores = score_photos(ensemble, read_photos(test.image_paths))
    np.testing.assert_allclose([s.score for s in scores], sub["Pawpularity"], atol=1e-4)
    # Asking for fewer views than the run's is allowed (a warning), and changes the submission.
    plain = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(padded_tta_run), blend="0.5", tta="none",
                              out=str(tmp_path / "plain/sub.csv"), cache_dir=str(tmp_path / "cache")))
    assert not np.allclose(plain["Pawpularity"], sub["Pawpularity"])


def test_ensemble_json_views_old_and_new(tmp_path):
    """Catches ensemble.json files from before named views (tta true/false) no longer loading, and a view
    name that no code knows getting through to scoring."""
    base = {"artifacts_dir": "a", "runs": ["r"], "weights": {"r:nn": 0.5, "r:svr": 0.5}}
    path = tmp_path / "e.json"
    for tta, views in ((True, ["flip"]), (False, []), (["zoom", "flip"], ["flip", "zoom"])):
        path.write_text(json.dumps({**base, "tta": tta}))
        assert EnsembleSpec.load(path).tta == views
    path.write_text(json.dumps({**base, "tta": ["mirror"]}))
    with pytest.raises(ArtifactError, match="unknown view"):
        EnsembleSpec.load(path)
    assert InferConfig(data_dir="d", tta=True).tta == "flip" and InferConfig(data_dir="d", tta=False).tta == "none"


def test_a_run_from_before_the_options_is_squashed_without_views(tiny_run):
    """Catches older runs (config.json without resize/tta) changing meaning: they are squash and no views."""
    manifest = Stage1Manifest.load(run_dir(tiny_run, "default"))
    old = dataclasses.replace(manifest, model={k: v for k, v in manifest.model.items() if k not in ("resize", "tta")})
    assert (old.resize, old.tta) == ("squash", ())
