"""Stage 2's choice on OOF (C and gamma, balanced sources), its nested estimate, and infer's cross-fitted blend."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.blend import best_weight, blend_curve, cross_fitted_rmse, family_weights
from inference.config import InferConfig
from inference.infer import infer
from inference.ensemble_oof import run_oof
from pawcore.errors import ConfigError
from pawcore.metrics import rmse
from pawcore.run import run_dir
from stage2_svr import nested as nested_module
from stage2_svr import search
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr
from stage2_svr.head import BlockBalance, Prep, SVRParams, fit_head
from stage2_svr.manifest import Stage2Manifest
from stage2_svr.nested import nested_oof
from stage2_svr.search import COARSE, FINE
from stage2_svr.selection import Space, forward_select

from .test_bank import _matrix, _problem

AUTO = Space(preps=(Prep(),), coarse=COARSE, fine=FINE)


def _wide_signal(n=150, d=32, seed=0):
    """A target of large amplitude (std ~18) on 2 of 32 features: with gamma 'scale' the kernel varies
    little across rows, so the SVR needs large dual coefficients, i.e. a large C."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.clip(50 + 25 * np.tanh(X[:, 0]) + 12.5 * X[:, 1] + rng.normal(0, 2, n), 1, 100)
    return {"x": X}, y, np.arange(n) % 3


def test_C_auto_picks_a_large_C_and_beats_C_20():
    """Breaks if the grid's C does not reach the SVR (e.g. the search fits params.C at every point), if
    the best point is not the one kept, or if the grid stops short of the C this signal needs."""
    blocks, y, fold_of = _wide_signal()
    params = SVRParams("sklearn")
    fixed = forward_select(["x"], _matrix(blocks), fold_of, y, params, Space(coarse=((20.0, 1.0),)))
    auto = forward_select(["x"], _matrix(blocks), fold_of, y, params, AUTO)
    assert auto.C >= 300 and auto.rmse < 0.6 * fixed.rmse, (auto.C, auto.rmse, fixed.rmse)
    # C itself matters, not only the kernel width: at C=20 no width of the grid comes close.
    c20 = forward_select(["x"], _matrix(blocks), fold_of, y, params,
                         Space(coarse=tuple((20.0, g) for _, g in FINE[:6])))
    assert auto.rmse < 0.75 * c20.rmse
    chosen = auto.table.iloc[-1]
    assert chosen["step"] == "chosen" and (chosen["C"], chosen["gamma"]) == (auto.C, auto.gamma_factor)


def test_balanced_selection_ignores_the_scale_of_a_source():
    """Multiplying one source's features by 1,000 leaves the balanced choice and its OOF RMSE unchanged,
    while the raw concatenation's OOF changes (so the test would see a balance that does nothing). Breaks
    if BlockBalance does not divide each block by its own total std, or is fitted on other columns."""
    blocks, y, fold_of = _problem()
    loud = {**blocks, "b": 1000 * blocks["b"]}
    balanced = Space(preps=(Prep(balance=True),), coarse=COARSE)
    picks = [forward_select(["noise", "a", "b"], _matrix(bl), fold_of, y, SVRParams("sklearn"), balanced)
             for bl in (blocks, loud)]
    assert picks[0].sources == picks[1].sources and sorted(picks[0].sources) == ["a", "b"]
    assert picks[0].rmse == pytest.approx(picks[1].rmse, rel=1e-4)
    assert (picks[0].C, picks[0].gamma_factor) == (picks[1].C, picks[1].gamma_factor)
    raw = [forward_select(["a", "b"], _matrix(bl), fold_of, y, SVRParams("sklearn"), Space(coarse=COARSE,
                                                                                          select_sources=False))
           for bl in (blocks, loud)]
    assert raw[1].rmse > raw[0].rmse + 0.5, "raw, the loud block drowns the other one"


def test_block_balance_gives_each_block_unit_total_variance():
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(0, 50, size=(40, 3)), rng.normal(0, 0.01, size=(40, 7))]).astype(np.float32)
    out = BlockBalance((3, 7)).fit(X).transform(X)
    assert out.dtype == np.float32
    assert out[:, :3].var(axis=0).sum() == pytest.approx(1, rel=1e-4)
    assert out[:, 3:].var(axis=0).sum() == pytest.approx(1, rel=1e-4)
    with pytest.raises(ValueError, match="do not add up"):
        BlockBalance((3, 6)).fit(X)


def test_nested_choice_never_sees_the_outer_folds_rows(monkeypatch):
    """Every SVR fitted while choosing for outer fold k trains on inner rows only, and exactly the inner
    training rows of one inner fold (rows counted by their unique targets), and predicts that inner
    fold's rows. Breaks if the choice is handed all rows with only the inner fold ids (then each inner
    fit also trains on fold k's rows), or if fold k's rows are scored during its own choice."""
    blocks, y, fold_of = _problem(n=120)
    fold_of = np.arange(120) % 4
    y = y + np.arange(120) * 1e-6  # unique targets name their rows
    row_of = {float(v): i for i, v in enumerate(y)}
    seen: list[tuple[int, set[int], int]] = []  # (outer fold, rows fitted on, rows predicted)
    outer = {"k": None}

    class SpySVR(search.SVR):
        def fit(self, K, targets):
            self._rows = {row_of[float(t)] for t in targets}
            return super().fit(K, targets)

        def predict(self, K):
            seen.append((outer["k"], self._rows, len(K)))
            return super().predict(K)

    real_select = nested_module.forward_select

    def spying_select(candidates, matrix, fo, targets, params, space, folds):
        outer["k"] = ({0, 1, 2, 3} - set(folds)).pop()
        return real_select(candidates, matrix, fo, targets, params, space, folds)

    monkeypatch.setattr(search, "SVR", SpySVR)
    monkeypatch.setattr(nested_module, "forward_select", spying_select)
    space = Space(preps=(Prep(), Prep(balance=True)), coarse=((30.0, 0.25), (300.0, 0.25)), fine=((100.0, 0.5),))
    result = nested_oof(["noise", "a", "b"], _matrix(blocks), fold_of, y, SVRParams("sklearn"), space, [0, 1, 2, 3])
    assert {k for k, _, _ in seen} == {0, 1, 2, 3}
    for k, rows, n_pred in seen:
        assert not rows & set(np.flatnonzero(fold_of == k)), f"a fit choosing for outer fold {k} saw its rows"
        assert len(rows) == 60 and n_pred == 30, "inner fit: 2 of the 3 inner folds; scored: the third"
    assert np.isfinite(result.pred).all() and list(result.table["fold"]) == [0, 1, 2, 3]
    assert result.rmse == pytest.approx(rmse(result.pred, y))


def test_nested_with_nothing_to_choose_is_the_plain_oof():
    """One source, one preparation, one SVR setting: the choice is fixed, so each outer fold's head is
    exactly fit-svr's fold head and the nested OOF equals the plain OOF. Breaks if the outer head is
    fitted on other rows than the fold's train rows, or scored on other rows than the fold's."""
    blocks, y, fold_of = _problem()
    space = Space(coarse=((20.0, 1.0),), select_sources=False)
    nested = nested_oof(["a"], _matrix(blocks), fold_of, y, SVRParams("sklearn"), space, [0, 1, 2])
    plain = np.zeros(len(y))
    for k in (0, 1, 2):  # fit-svr's fold heads (stage2_svr/fit.py: _fit_folds)
        tr, va = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        plain[va] = fit_head(blocks["a"].astype(np.float32), tr, va, y, SVRParams("sklearn", C=20.0))[1]
    np.testing.assert_allclose(nested.pred, plain, rtol=0, atol=1e-9)


def test_nested_on_needs_three_folds_and_auto_says_why_not(run_copy):
    with pytest.raises(ConfigError, match="at least 3 folds"):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features="tuned", nested="on"))
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", features="tuned"))
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert manifest.nested_rmse is None and "too few" in manifest.nested_note
    assert set(manifest.chosen_on_oof) == {"sources", "scaler", "balance", "C", "gamma"}
    with pytest.raises(ConfigError, match="--C 'big'"):
        fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", C="big"))


def test_old_settings_flags_choose_nothing_but_sources_and_scaler(run_copy):
    """`--C 20 --balance off --nested off`: the settings before C auto (C=20, gamma 'scale', raw sources)."""
    fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn", C="20", balance="off", nested="off"))
    manifest = Stage2Manifest.load(run_dir(run_copy, "default"))
    assert (manifest.C, manifest.gamma, manifest.gamma_factor, manifest.balance) == (20.0, "scale", 1.0, False)
    assert manifest.chosen_on_oof == ("sources", "scaler")
    head = manifest.load_head(0)
    assert head.named_steps["balance"] == "passthrough" and head.named_steps["svr"].C == 20.0


def test_cross_fitted_blend_never_uses_the_fold_it_scores():
    """Fold 0's target is the NN head, fold 1's the SVR head: fitted on all rows the weight lands between;
    cross-fitted, fold 0 is scored with fold 1's weight (SVR only) and fold 1 with fold 0's (NN only).
    Breaks if a fold's own rows enter the weights that score it."""
    rng = np.random.default_rng(0)
    nn, svr = rng.uniform(20, 80, 200), rng.uniform(20, 80, 200)
    fold = np.repeat([0, 1], 100)
    oof = pd.DataFrame({"fold": fold, "r:nn": nn, "r:svr": svr, "target": np.where(fold == 0, nn, svr)})

    def fit(rows: pd.DataFrame) -> dict[str, float]:
        return family_weights(["r"], best_weight(blend_curve(rows.rename(columns={"r:nn": "nn", "r:svr": "svr"}))))

    crossed = cross_fitted_rmse(oof, fit)
    assert crossed == pytest.approx(rmse(svr[fold == 0].tolist() + nn[fold == 1].tolist(), oof["target"]))
    fitted = rmse(np.clip(sum(w * oof[h] for h, w in fit(oof).items()), 1, 100), oof["target"])
    assert crossed > fitted + 5
    assert cross_fitted_rmse(oof[fold == 0], fit) is None  # one fold: nothing to cross-fit


def test_infer_blend_auto_reports_both_blend_numbers_and_the_spread(run_copy, tiny_data, capsys):
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="auto"))
    oof = run_oof(run_dir(run_copy, "default"))
    expected = cross_fitted_rmse(oof.rename(columns={"nn": "default:nn", "svr": "default:svr"}),
                                 lambda rows: family_weights(["default"], best_weight(blend_curve(
                                     rows.rename(columns={"default:nn": "nn", "default:svr": "svr"})))))
    assert f"cross-fitted: {expected:.3f}" in capsys.readouterr().out
    report = (run_copy / "default/report.md").read_text()
    assert f"| {expected:.3f} | **trust this one** |" in report and "| fitted (weights chosen" in report
    assert "| head | OOF RMSE | OOF std | weight |" in report
    assert f"beside the target's ({oof['target'].std():.1f})" in report
