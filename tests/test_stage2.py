"""Stage 2: backends agree, embeddings are deterministic and cached by checkpoint, stale stage 1 is refused."""
from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

from pawcore.errors import ArtifactError, ConfigError
from pawcore.run import run_dir
from stage1_backbone.model import PawpularityNet
from stage1_backbone.predict import embed_and_score
from stage1_backbone.pretrained import create_backbone
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr import bank as bank_module
from stage2_svr.manifest import Stage2Manifest
from stage2_svr.backends import cuml_usable, make_svr, portable, predict_numpy, resolve_backend, sklearnex_usable
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone

from .conftest import TINY


def regression_problem(n=400, d=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.clip(40 + 12 * X[:, 0] - 8 * X[:, 1] ** 2 + 6 * np.sin(X[:, 2]) + rng.normal(0, 3, n), 1, 100)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.mark.skipif(not sklearnex_usable(), reason="scikit-learn-intelex not installed (pip install -e '.[cpu-fast]')")
def test_sklearn_and_sklearnex_agree():
    Xtr, ytr, Xte, yte = regression_problem()
    preds = {b: predict_numpy(make_svr(b, C=20.0, epsilon=0.1, gamma="scale").fit(Xtr, ytr), Xte)
             for b in ("sklearn", "sklearnex")}
    assert np.abs(preds["sklearn"] - preds["sklearnex"]).max() < 0.05   # same solver problem, tolerance 1e-3
    rmse = {b: float(np.sqrt(np.mean((p - yte) ** 2))) for b, p in preds.items()}
    assert abs(rmse["sklearn"] - rmse["sklearnex"]) < 0.01
    assert rmse["sklearn"] < 0.8 * float(np.std(yte)), "the SVR must learn something"


@pytest.mark.gpu
@pytest.mark.skipif(not cuml_usable(), reason="needs cuML and a CUDA GPU (pip install -e '.[gpu]')")
def test_cuml_agrees_with_sklearn_and_saves_portably(tmp_path):
    import cupy

    Xtr, ytr, Xte, _ = regression_problem()
    ref = predict_numpy(make_svr("sklearn", C=20.0).fit(Xtr, ytr), Xte)
    gpu = make_svr("cuml", C=20.0).fit(cupy.from_dlpack(torch.from_numpy(Xtr).cuda()), ytr)
    out = predict_numpy(gpu, cupy.asarray(Xte))
    assert isinstance(out, np.ndarray) and np.abs(out - ref).max() < 0.5
    joblib.dump(portable(gpu), tmp_path / "svr.joblib")
    cpu = joblib.load(tmp_path / "svr.joblib")
    assert type(cpu).__module__.startswith("sklearn")
    np.testing.assert_allclose(predict_numpy(cpu, Xte), out, atol=0.5)


def test_backend_resolution(monkeypatch):
    from stage2_svr import backends

    assert resolve_backend("sklearn") == "sklearn"
    # 'auto' picks by what is usable: each combination, not just "one of the three names".
    for cuml, sklearnex, expected in [(True, True, "cuml"), (True, False, "cuml"), (False, True, "sklearnex"),
                                      (False, False, "sklearn")]:
        monkeypatch.setattr(backends, "cuml_usable", lambda cuml=cuml: cuml)
        monkeypatch.setattr(backends, "sklearnex_usable", lambda sklearnex=sklearnex: sklearnex)
        assert resolve_backend("auto") == expected, (cuml, sklearnex)
    # An explicit backend that is not usable is an error with the fix, never a silent fallback.
    with pytest.raises(ConfigError, match="needs cuML and a CUDA GPU"):
        resolve_backend("cuml")
    with pytest.raises(ConfigError, match="needs scikit-learn-intelex"):
        resolve_backend("sklearnex")
    with pytest.raises(ConfigError, match="'scale', 'auto' or a positive number"):
        make_svr("sklearn", gamma="wide")


def test_embeddings_have_no_augmentation_or_dropout():
    torch.manual_seed(0)
    model = PawpularityNet(create_backbone("test_efficientnet", "none"))
    model.train()  # embed_and_score must switch to eval itself
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    pixels[2] = pixels[0]  # the same image twice
    emb, _ = embed_and_score(model, pixels, device="cpu")
    assert emb.shape == (3, 256)
    assert torch.equal(emb[0], emb[2])
    again, _ = embed_and_score(model, pixels, device="cpu")
    assert torch.equal(emb, again)
    flipped, _ = embed_and_score(model, pixels, device="cpu", view="flip")
    assert not torch.equal(emb, flipped)


def test_stage2_artifacts_and_table(tiny_run):
    run = run_dir(tiny_run, "default")
    manifest = Stage2Manifest.load(run)
    assert sorted(manifest.folds) == [0, 1]
    oof = pd.read_csv(Stage2Manifest.oof_file(run), dtype={"Id": str})
    nn = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str})
    assert sorted(oof["Id"]) == sorted(nn["Id"]) and oof["pred"].between(1, 100).all()
    for k in (0, 1):
        head = manifest.load_head(k)
        scaler, svr = head.named_steps["scale"], head.named_steps["svr"]
        assert hasattr(svr, "support_vectors_") and scaler.mean_.shape == (256,)
        record = json.loads(Stage2Manifest.fold_config_file(run, k).read_text())
        assert record["C"] == svr.C == manifest.C and record["gamma"] == svr.gamma  # the saved head's settings


def test_embedding_cache_reused_then_invalidated(run_copy, monkeypatch):
    calls = []
    real = bank_module.forward_batches

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(bank_module, "forward_batches", counting)
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", C=3.0, features="tuned"))
    assert calls == [], "a second fit-svr with other SVR settings re-uses the cached embeddings"
    assert json.loads((run_copy / "default/stage2/fold0/config.json").read_text())["C"] == 3.0

    # Re-train fold 0 only (another init seed -> other weights, new hash); fold 1 is untouched.
    data_dir = json.loads((run_copy / "default/stage1/manifest.json").read_text())["data_dir"]
    train_backbone(TrainConfig(data_dir=data_dir, artifacts_dir=str(run_copy), **{**TINY, "seed": 8}, folds="0"))
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features="tuned"))
    assert len(calls) == 1, "only the changed checkpoint's embeddings are recomputed"


def test_missing_stage1_names_the_command(tmp_path):
    with pytest.raises(ArtifactError, match="python pipeline.py train-backbone --run default"):
        fit_svr(SVRConfig(artifacts_dir=str(tmp_path)))


def test_changed_stage1_checkpoint_is_refused(run_copy):
    weights = run_copy / "default/stage1/fold1/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match=r"fold1/model.safetensors \(fold 1\) changed since .* Run `python pipeline.py train-backbone"):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy)))


def test_incomplete_stage1_is_refused(run_copy):
    (run_copy / "default/stage1/fold0/model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="listed in .* but missing"):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy)))


def test_changed_folds_are_refused(run_copy):
    folds = run_copy / "default/folds.csv"
    folds.write_text(folds.read_text().replace(",0\n", ",1\n", 1))
    with pytest.raises(ArtifactError, match="folds.csv changed after stage 1"):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy)))


def test_embedding_batches_sliced_from_the_cache_equal_the_per_image_loader():
    """The one-copy-per-batch path (num_workers=0) must give what the per-image Dataset path gives."""
    torch.manual_seed(0)
    model = PawpularityNet(create_backbone("test_efficientnet", "none"))
    pixels = np.random.default_rng(1).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    for rows in (np.arange(7), np.array([5, 0, 3])):  # contiguous and scattered rows
        sliced, s_scores = embed_and_score(model, pixels, rows, batch_size=3, device="cpu", num_workers=0)
        loaded, l_scores = embed_and_score(model, pixels, rows, batch_size=3, device="cpu", num_workers=1)
        assert sliced.shape == (len(rows), 256)
        torch.testing.assert_close(sliced, loaded)
        torch.testing.assert_close(s_scores, l_scores)


def test_embedding_from_the_read_only_image_cache_warns_nothing(tmp_path):
    """The cache is a read-only memmap; torch warned "The given NumPy array is not writable" at every fit-svr."""
    import warnings

    model = PawpularityNet(create_backbone("test_efficientnet", "none"))
    np.save(tmp_path / "px.npy", np.random.default_rng(2).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8))
    pixels = np.load(tmp_path / "px.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb, _ = embed_and_score(model, pixels, np.arange(5), batch_size=2, device="cpu", num_workers=0)
    assert emb.shape == (5, 256)
    assert not pixels.flags.writeable  # the cache itself is untouched


def test_albumentations_is_told_not_to_go_online():
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", "import os, stage1_backbone.dataset; "
                          "print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'))"], env=env, capture_output=True, text=True,
                         cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "1", out.stderr
