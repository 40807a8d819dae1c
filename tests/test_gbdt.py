"""The gradient-boosted head beside the SVR: early stopping on inner rows only, saved and blended as a head."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.base import clone

from inference.blend import family_weights
from inference.config import InferConfig
from inference.infer import auto_weights, best_weight, blend_curve, infer
from pawcore.errors import ArtifactError, ConfigError
from pawcore.metrics import rmse
from pawcore.run import run_dir
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.gbdt import GBDTParams, GBDTRegressor, inner_split, make_gbdt_head
from stage2_svr.manifest import Stage2Manifest


def _problem(n=300, width=40, seed=0):
    """A score that steps with one column and bends with another, beside noise columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, width)).astype(np.float32)
    y = np.clip(40 + 12 * (X[:, 3] > 0.3) + 6 * np.tanh(X[:, 7]) + rng.normal(0, 2, n), 1, 100)
    return X, y


def test_inner_split_is_disjoint_seeded_and_spans_the_scores():
    """Catches: stopping rows that overlap the rows trees grow on (early stopping on seen rows never stops),
    a split that changes between runs (fit-svr could not be re-run to the same heads), or stopping rows all
    from one end of the score range."""
    y = np.random.default_rng(1).uniform(1, 100, 200)
    grow, stop = inner_split(y, 0.2, seed=0)
    assert len(stop) == 40 and len(grow) == 160 and not set(grow) & set(stop)
    assert np.array_equal(np.sort(np.concatenate([grow, stop])), np.arange(200))
    assert all(np.array_equal(a, b) for a, b in zip((grow, stop), inner_split(y, 0.2, seed=0)))
    bins = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
    assert np.bincount(bins[stop], minlength=5).tolist() == [8, 8, 8, 8, 8]


def test_trees_are_counted_on_the_stopping_rows_then_refitted_on_all_rows():
    """The number of trees is the argmin of the stopping rows' RMSE curve of trees grown on the other rows
    (computed here with plain XGBoost), and the saved model is that many trees fitted on every row given.
    Catches: early stopping on the wrong rows, no refit (a fifth of the fold's training rows unused), and the
    cap of n_estimators reached instead of stopping."""
    X, y = _problem()
    params = GBDTParams()
    est = GBDTRegressor(**vars(params)).fit(X, y)
    grow, stop = inner_split(y, params.validation_fraction, params.random_state)
    kwargs = dict(learning_rate=params.learning_rate, max_depth=params.max_depth, subsample=params.subsample,
                  min_child_weight=params.min_child_weight, colsample_bytree=params.colsample_bytree,
                  reg_lambda=params.reg_lambda, max_bin=params.max_bin, tree_method="hist",
                  random_state=params.random_state, eval_metric="rmse")
    curve = xgb.XGBRegressor(n_estimators=est.n_trees_ + params.early_stopping_rounds, **kwargs).fit(
        X[grow], y[grow], eval_set=[(X[stop], y[stop])], verbose=False).evals_result()["validation_0"]["rmse"]
    assert est.n_trees_ == int(np.argmin(curve)) + 1 < params.n_estimators
    assert est.inner_rmse_ == pytest.approx(min(curve), rel=1e-6)
    refit = xgb.XGBRegressor(n_estimators=est.n_trees_, **kwargs).fit(X, y)
    np.testing.assert_allclose(est.predict(X), refit.predict(X), atol=1e-4)
    noise = GBDTRegressor(**vars(params)).fit(X, np.random.default_rng(2).normal(40, 10, len(y)))
    assert noise.n_trees_ < est.n_trees_  # nothing to learn: it stops early


def test_the_head_learns_and_survives_cloning_and_pickling(tmp_path):
    """Catches: a head that does not learn a signal a mean cannot (held-out RMSE well under the target's std),
    parameters kept outside __init__ (sklearn's clone would drop them), or a saved head predicting otherwise."""
    import joblib

    X, y = _problem(n=500)
    head = clone(make_gbdt_head(GBDTParams(), [40])).fit(X[:400], y[:400])
    assert rmse(head.predict(X[400:]), y[400:]) < 0.6 * y[400:].std()
    joblib.dump(head, tmp_path / "head.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "head.joblib").predict(X[400:]), head.predict(X[400:]))
    assert head.named_steps["gbdt"].model_.get_params()["device"] == "cpu"  # loads on a machine without a GPU


def test_a_fold_s_gbdt_never_sees_that_fold_s_targets(run_copy, tiny_data, tmp_path):
    """Fold 0's GBDT OOF predictions do not move when fold 0's targets change; fold 1's do (its head trains on
    them). Catches: early stopping (or any fitting) on rows of the fold it then scores."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    folds = pd.read_csv(run_copy / "default/folds.csv", dtype={"Id": str})
    train = pd.read_csv(data / "train.csv", dtype={"Id": str})
    config = dict(artifacts_dir=str(run_copy), svr_backend="sklearn", select="none", features="tuned", heads="svr,gbdt",
                  recalibrate="off", data_dir=str(data))
    fit_svr(SVRConfig(**config))
    before = pd.read_csv(Stage2Manifest.oof_file_of(run_dir(run_copy, "default"), "gbdt"), dtype={"Id": str})
    in_fold0 = train["Id"].isin(folds.loc[folds["fold"] == 0, "Id"])
    train.loc[in_fold0, "Pawpularity"] = 101 - train.loc[in_fold0, "Pawpularity"]
    train.to_csv(data / "train.csv", index=False)
    fit_svr(SVRConfig(**config))
    after = pd.read_csv(Stage2Manifest.oof_file_of(run_dir(run_copy, "default"), "gbdt"), dtype={"Id": str})
    merged = before.merge(after, on="Id", suffixes=("_before", "_after"))
    fold0 = merged["fold_before"] == 0
    np.testing.assert_allclose(merged.loc[fold0, "pred_before"], merged.loc[fold0, "pred_after"], atol=1e-9)
    assert not np.allclose(merged.loc[~fold0, "pred_before"], merged.loc[~fold0, "pred_after"])


def test_heads_option_is_checked():
    """Catches: a GBDT without the SVR (stage 2's choice of sources is the SVR's), or a head named twice."""
    for bad in ("gbdt", "svr,svr", "svr,trees", ""):
        with pytest.raises(ConfigError, match="--heads"):
            SVRConfig(heads=bad)
    assert SVRConfig().heads == "svr" and SVRConfig(heads="svr,gbdt").heads == "svr,gbdt"


def test_blend_weights_treat_the_gbdt_as_one_more_head():
    """--blend W gives 1 - W to the stage-2 heads evenly; --blend auto over NN, SVR and GBDT sums to 1 and is
    never worse on OOF than the NN/SVR grid. Catches: the GBDT head left out of the weights (or counted as
    an NN), or an auto blend worse than the two-head one it starts from."""
    assert family_weights(["a"], 0.4, {"a": ["svr", "gbdt"]}) == pytest.approx({"a:nn": 0.4, "a:svr": 0.3, "a:gbdt": 0.3})
    assert family_weights(["a"], 0.4) == {"a:nn": 0.4, "a:svr": 0.6}
    rng = np.random.default_rng(3)
    y = rng.uniform(1, 100, 300)
    oof = pd.DataFrame({"target": y, "a:nn": y + rng.normal(0, 12, 300), "a:svr": y + rng.normal(0, 12, 300),
                        "a:gbdt": y + rng.normal(0, 12, 300), "fold": np.arange(300) % 3})
    oof = oof.assign(nn=oof["a:nn"], svr=oof["a:svr"])
    weights, _ = auto_weights(oof, ["a"])
    assert set(weights) == {"a:nn", "a:svr", "a:gbdt"} and sum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) > 0.2  # three equally good, independent heads: each gets a share
    three = rmse(np.clip(sum(w * oof[h] for h, w in weights.items()), 1, 100), y)
    assert three <= blend_curve(oof)["rmse"].min() + 1e-9
    assert 0.0 <= best_weight(blend_curve(oof)) <= 1.0


def test_an_ensemble_json_weighing_a_head_the_run_lacks_is_refused(run_copy, tiny_data, tmp_path):
    """Catches: a replayed ensemble.json that weighs a GBDT head the run no longer has (stage 2 re-fitted with
    --heads svr) scoring silently without it, or failing with a bare KeyError."""
    spec = tmp_path / "ensemble.json"
    spec.write_text(json.dumps({"artifacts_dir": str(run_copy), "runs": ["default"], "tta": False,
                                "weights": {"default:nn": 0.4, "default:svr": 0.3, "default:gbdt": 0.3}}))
    with pytest.raises(ArtifactError, match=r"weighs head 'default:gbdt'.*other --heads"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), weights_from=str(spec),
                          out=str(tmp_path / "s.csv")))
