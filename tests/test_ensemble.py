"""Ensembles of several runs: shared folds, weights fitted on OOF, --blend W over head means, --weights-from replay.

Expected submissions are computed independently of infer's blend code: from each run's heads, scored
by RunPredictor directly, with the formula written out here.
"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from inference.blend import blend_mse, family_weights, fit_weights
from inference.config import InferConfig
from inference.ensemble import EnsembleSpec
from inference.ensemble_oof import check_shared_folds
from inference.infer import infer
from inference.predictor import RunPredictor
from pawcore.artifacts import read_json, sha256_file, write_json
from pawcore.data import read_split
from pawcore.errors import ArtifactError, ConfigError
from pawcore.folds import adopt_folds, same_folds
from pawcore.images import SplitImages
from pawcore.metrics import rmse
from inference.ensemble_oof import run_oof
from pawcore.run import run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr.manifest import Stage2Manifest
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr

from .conftest import TINY


# --- weights on generated OOF data (no models) ---------------------------------------------------

def _generated_oof(seed: int = 0, n: int = 600):
    rng = np.random.default_rng(seed)
    y = rng.uniform(5, 95, n)
    good_a = y + rng.normal(0, 4, n)
    good_b = y + rng.normal(0, 6, n)
    noise = rng.uniform(1, 100, n)  # independent of y: pure noise
    return np.column_stack([good_a, noise, good_b]), y


def test_pure_noise_head_gets_near_zero_weight():
    X, y = _generated_oof()
    w = fit_weights(X, y)
    assert w.shape == (3,) and (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w[1] < 0.02, f"noise head weight {w[1]:.4f}"
    assert w[0] > w[2] > 0.2  # the less noisy good head weighs more; both count
    fitted = rmse(np.clip(X @ w, 1, 100), y)
    assert fitted < min(rmse(X[:, j], y) for j in range(3)) - 0.5  # averaging two good heads helps


def test_weights_recover_a_known_mixture_and_beat_every_vertex():
    rng = np.random.default_rng(1)
    a, b, c = rng.uniform(10, 90, (3, 400))
    y = 0.3 * a + 0.7 * b  # exactly, inside [1, 100]
    w = fit_weights(np.column_stack([a, b, c]), y)
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=2e-3)
    X = np.column_stack([a, b, c])
    for j in range(3):
        assert blend_mse(w, X, y)[0] <= blend_mse(np.eye(3)[j], X, y)[0]


def _simplex_grid_min(X: np.ndarray, y: np.ndarray, step: int = 200) -> float:
    """The lowest MSE of the clipped blend over every 3-head weight vector on a 1/step grid of the simplex."""
    i, j = np.meshgrid(np.arange(step + 1), np.arange(step + 1), indexing="ij")
    keep = i + j <= step
    W = np.column_stack([i[keep], j[keep], step - i[keep] - j[keep]]) / step
    return float(((np.clip(W @ X.T, 1, 100) - y) ** 2).mean(axis=1).min())


def test_fit_beats_every_blend_on_a_fine_grid_where_the_clip_bites():
    """Catches a wrong gradient in blend_mse (the clip's flat parts not masked, a sign) or an optimizer
    result thrown away: SLSQP then stops at, or returns, weights that a 1/200 grid of the simplex beats."""
    rng = np.random.default_rng(4)
    y = rng.uniform(1, 30, 300)
    X = np.column_stack([y + rng.normal(0, 8, 300), 0.5 * y + 12 + rng.normal(0, 5, 300),
                         1.6 * y - 12 + rng.normal(0, 6, 300)])
    assert (X < 1).mean() > 0.05  # heads below 1 on many rows: the clip shapes the objective
    w = fit_weights(X, y)
    assert blend_mse(w, X, y)[0] <= _simplex_grid_min(X, y)


def test_family_weights_spread_w_over_the_heads():
    assert family_weights(["a"], 0.37) == {"a:nn": 0.37, "a:svr": 1 - 0.37}
    two = family_weights(["a", "b"], 0.6)
    assert two == pytest.approx({"a:nn": 0.3, "b:nn": 0.3, "a:svr": 0.2, "b:svr": 0.2})


# --- shared folds ------------------------------------------------------------------------------

def _folds(ids, folds) -> pd.DataFrame:
    return pd.DataFrame({"Id": ids, "fold": folds})


def test_same_folds_ignores_row_order_but_not_fold_ids():
    a = _folds(["x", "y", "z", "w"], [0, 1, 0, 1])
    assert same_folds(a, a.iloc[::-1].reset_index(drop=True))
    assert not same_folds(a, _folds(["x", "y", "z", "w"], [1, 0, 0, 1]))
    assert not same_folds(a, _folds(["x", "y", "z", "v"], [0, 1, 0, 1]))


def test_folds_from_copies_and_refuses(tmp_path):
    src, dst = tmp_path / "a/folds.csv", tmp_path / "b/folds.csv"
    with pytest.raises(ArtifactError, match="--folds-from a: .* not found. Train run 'a' first"):
        adopt_folds(src, dst, "a")
    src.parent.mkdir()
    _folds(["x", "y", "z", "w"], [0, 1, 0, 1]).to_csv(src, index=False)
    adopt_folds(src, dst, "a")
    assert same_folds(pd.read_csv(src, dtype={"Id": str}), pd.read_csv(dst, dtype={"Id": str}))
    _folds(["x", "y", "z", "w"], [1, 1, 0, 0]).to_csv(dst, index=False)
    with pytest.raises(ArtifactError, match="already has .* other folds"):
        adopt_folds(src, dst, "a")


def test_train_backbone_folds_from_a_missing_run_fails_before_training(tiny_data, tmp_path):
    cfg = TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(tmp_path), run="b", folds_from="nope", **TINY)
    with pytest.raises(ArtifactError, match="--folds-from nope"):
        train_backbone(cfg)
    assert not (tmp_path / "b" / "stage1").exists()


def test_check_shared_folds_names_both_runs_and_the_fix(tmp_path):
    manifests = {}
    for run, folds in (("a", [0, 1, 0, 1]), ("b", [0, 1, 1, 0])):
        path = tmp_path / run / "folds.csv"
        path.parent.mkdir()
        _folds(["x", "y", "z", "w"], folds).to_csv(path, index=False)
        manifests[run] = sha256_file(path)
    with pytest.raises(ArtifactError, match=r"Runs 'a' and 'b' have different folds.*--folds-from a"):
        check_shared_folds(str(tmp_path), ["a", "b"], manifests)
    check_shared_folds(str(tmp_path), ["a", "a"], manifests)  # identical folds pass


# --- infer with real (tiny) runs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tiny_run, tiny_data, tmp_path_factory):
    """Artifacts with run 'default' (the session's tiny run) and run 'b': same folds, another seed."""
    art = tmp_path_factory.mktemp("ensemble") / "artifacts"
    shutil.copytree(tiny_run, art)
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(art),
                               **{**TINY, "seed": 11, "run": "b", "folds_from": "default"}))
    fit_svr(SVRConfig(artifacts_dir=str(art), run="b", svr_backend="sklearn"))
    assert read_json(art / "b/stage1/manifest.json")["folds_from"] == "default"
    return art


@pytest.fixture(scope="module")
def heads(two_runs, tiny_data):
    """Each run's test heads, scored by RunPredictor directly (not through infer or Ensemble)."""
    test = read_split(tiny_data, "test")
    images = SplitImages(test.image_paths, two_runs / "cache", "test")
    return {run: RunPredictor(run_dir(two_runs, run)).heads(images) for run in ("default", "b")}


def _infer(art, data, out, **kw) -> pd.DataFrame:
    return infer(InferConfig(data_dir=str(data), artifacts_dir=str(art), out=str(out), **kw))


def test_one_run_reproduces_the_single_run_blend(two_runs, tiny_data, heads, tmp_path):
    h = heads["default"]
    half = _infer(two_runs, tiny_data, tmp_path / "half.csv", blend="0.5")
    np.testing.assert_allclose(half["Pawpularity"], np.clip(0.5 * h["nn"] + 0.5 * h["svr"], 1, 100), atol=1e-6)
    # --blend auto with one run: the NN weight with the lowest OOF RMSE on the 0.01 grid, as before.
    oof = run_oof(run_dir(two_runs, "default"))
    grid = np.round(np.arange(101) / 100, 2)
    errors = [rmse(np.clip(w * oof["nn"] + (1 - w) * oof["svr"], 1, 100), oof["target"]) for w in grid]
    w = grid[int(np.argmin(errors))]
    auto = _infer(two_runs, tiny_data, tmp_path / "auto.csv", blend="auto")
    np.testing.assert_allclose(auto["Pawpularity"], np.clip(w * h["nn"] + (1 - w) * h["svr"], 1, 100), atol=1e-6)
    assert EnsembleSpec.load(tmp_path / "ensemble.json").weights == {"default:nn": w, "default:svr": 1 - w}


def test_blend_w_over_several_runs_weighs_the_head_means(two_runs, tiny_data, heads, tmp_path):
    sub = _infer(two_runs, tiny_data, tmp_path / "sub.csv", runs="default,b", blend="0.7")
    nn = (heads["default"]["nn"] + heads["b"]["nn"]) / 2
    svr = (heads["default"]["svr"] + heads["b"]["svr"]) / 2
    np.testing.assert_allclose(sub["Pawpularity"], np.clip(0.7 * nn + 0.3 * svr, 1, 100), atol=1e-6)
    assert not np.allclose(heads["default"]["nn"], heads["b"]["nn"], atol=1e-3)  # the runs really differ


def test_auto_weights_over_several_runs(two_runs, tiny_data, heads, tmp_path):
    sub = _infer(two_runs, tiny_data, tmp_path / "sub.csv", runs="default,b", blend="auto")
    weights = EnsembleSpec.load(tmp_path / "ensemble.json").weights
    assert sorted(weights) == ["b:nn", "b:svr", "default:nn", "default:svr"]
    assert all(w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(1.0, abs=1e-9)
    expected = sum(weights[f"{run}:{kind}"] * heads[run][kind] for run in heads for kind in ("nn", "svr"))
    np.testing.assert_allclose(sub["Pawpularity"], np.clip(expected, 1, 100), atol=1e-6)
    # The weights are the optimum on the OOF matrix built here from each run's own OOF file, rows matched
    # by Id: a matrix with rows of one run out of line, heads in another order than their names, or the
    # wrong target gives weights that the fit on this matrix beats.
    oofs = {run: run_oof(run_dir(two_runs, run)).set_index("Id") for run in heads}
    names = sorted(weights)
    target = oofs["default"]["target"]
    X = np.column_stack([oofs[name.split(":")[0]][name.split(":")[1]].loc[target.index] for name in names])
    chosen = np.array([weights[name] for name in names])
    best = fit_weights(X, target.to_numpy(), starts=[chosen])
    assert blend_mse(chosen, X, target.to_numpy())[0] <= blend_mse(best, X, target.to_numpy())[0] + 1e-6
    assert np.isfinite(X).all() and np.ptp(X, axis=0).min() > 0
    report = (tmp_path / "report.md").read_text()
    assert "optimistic" in report and "| b:svr |" in report
    for name in ("weights.png", "oof_scatter.png", "blend_curve.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG" and f"]({name})" in report


def test_weights_from_replays_the_submission_exactly_without_oof(two_runs, tiny_data, tmp_path):
    first = _infer(two_runs, tiny_data, tmp_path / "first/sub.csv", runs="default,b", blend="auto", tta=True)
    kaggle = tmp_path / "kaggle"  # the runs' artifacts alone, without the merged OOF files or caches
    for run in ("default", "b"):
        shutil.copytree(two_runs / run, kaggle / run, ignore=shutil.ignore_patterns("oof_*.csv"))
    assert not list(kaggle.rglob("oof_*.csv"))
    replay = _infer(kaggle, tiny_data, tmp_path / "replay/sub.csv", weights_from=str(tmp_path / "first/ensemble.json"))
    np.testing.assert_array_equal(replay["Pawpularity"].to_numpy(), first["Pawpularity"].to_numpy())
    assert replay["Id"].tolist() == first["Id"].tolist()
    saved, again = (EnsembleSpec.load(tmp_path / d / "ensemble.json") for d in ("first", "replay"))
    assert again.weights == saved.weights and again.runs == ["default", "b"] and again.tta
    assert "No out-of-fold predictions" in (tmp_path / "replay/report.md").read_text()
    with pytest.raises(ConfigError, match="--runs 'b' but --weights-from"):
        _infer(kaggle, tiny_data, tmp_path / "x.csv", runs="b", weights_from=str(tmp_path / "first/ensemble.json"))


def test_infer_refuses_runs_with_other_folds(two_runs, tiny_data, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(two_runs, art, ignore=shutil.ignore_patterns("cache"))
    # Make run 'b' look trained on other folds: its folds.csv and manifests agree with each other.
    run = run_dir(art, "b")
    folds = pd.read_csv(run.folds_csv, dtype={"Id": str})
    folds["fold"] = 1 - folds["fold"]
    folds.to_csv(run.folds_csv, index=False)
    stage1 = read_json(Stage1Manifest.path(run))
    write_json(Stage1Manifest.path(run), {**stage1, "folds_csv_sha256": sha256_file(run.folds_csv)})
    stage2 = read_json(Stage2Manifest.path(run))
    write_json(Stage2Manifest.path(run), {**stage2, "stage1_manifest_sha256": sha256_file(Stage1Manifest.path(run))})
    with pytest.raises(ArtifactError, match=r"Runs 'default' and 'b' have different folds.*--folds-from default"):
        _infer(art, tiny_data, tmp_path / "sub.csv", runs="default,b")
    assert not (tmp_path / "sub.csv").exists()
    with pytest.raises(ConfigError, match="listed more than once"):
        _infer(art, tiny_data, tmp_path / "sub.csv", runs="default,default")
