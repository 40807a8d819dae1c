"""The blend weights: given (--blend W) or chosen on out-of-fold predictions (--blend auto).

One run with two heads: final = w x NN + (1 - w) x SVR, w on a 0.01 grid. Several runs, or a run with more
heads (fit-svr --heads svr,gbdt): one weight per head, fitted with scipy's SLSQP (non-negative, summing to 1). Weights fitted on OOF make the blend's OOF RMSE
optimistic; `cross_fitted_rmse` gives the honest figure beside it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from pawcore.metrics import rmse

from .ensemble import head_name

GRID = np.round(np.arange(0, 101) / 100, 2)  # 0.00, 0.01, ..., 1.00


def blend_curve(oof: pd.DataFrame) -> pd.DataFrame:
    """OOF RMSE of the blend for every weight on the 0.01 grid (columns: weight, rmse)."""
    nn, svr, y = oof["nn"].to_numpy(), oof["svr"].to_numpy(), oof["target"].to_numpy()
    return pd.DataFrame({"weight": GRID, "rmse": [rmse(np.clip(w * nn + (1 - w) * svr, 1, 100), y) for w in GRID]})


def best_weight(curve: pd.DataFrame) -> float:
    return float(curve.loc[curve["rmse"].idxmin(), "weight"])


def family_weights(runs: list[str], weight: float, stage2: dict[str, list[str]] | None = None) -> dict[str, float]:
    """--blend W over several runs: W to the mean of the NN heads, 1 - W to the mean of the stage-2 heads
    (`stage2`: each run's stage-2 head kinds; default the SVR alone).

    With one run and its SVR this is exactly {run:nn: W, run:svr: 1 - W}, the single-run blend.
    """
    stage2 = stage2 or {run: ["svr"] for run in runs}
    n_stage2 = sum(len(stage2[run]) for run in runs)
    out = {}
    for run in runs:
        out[head_name(run, "nn")] = weight / len(runs)
        for kind in stage2[run]:
            out[head_name(run, kind)] = (1 - weight) / n_stage2
    return out


def blend_mse(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error of clip(X @ w, 1, 100) against y, and its gradient in w (the final score is clipped,
    so the fit minimises exactly the OOF RMSE that the report prints)."""
    raw = X @ w
    pred = np.clip(raw, 1, 100)
    resid = pred - y
    inside = (raw > 1) & (raw < 100)  # where the clip is flat the gradient is 0
    return float(np.mean(resid ** 2)), 2.0 * X.T @ (resid * inside) / len(y)


def fit_weights(X: np.ndarray, y: np.ndarray, starts: list[np.ndarray] | None = None) -> np.ndarray:
    """One weight per head (column of X), each >= 0, summing to 1, minimising the OOF RMSE of the clipped blend.

    scipy's SLSQP with bounds [0, 1] and the equality constraint sum(w) = 1, started from equal weights
    and from each of `starts` (e.g. each single run's own best blend); the best result wins, and never
    one worse than a start, so the ensemble is never worse on OOF than the best single run's blend.
    """
    from scipy.optimize import minimize

    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    n_heads = X.shape[1]
    candidates = [np.full(n_heads, 1.0 / n_heads)] + [np.asarray(s, np.float64) for s in (starts or [])]
    best_w, best_f = None, np.inf
    for x0 in candidates:
        result = minimize(blend_mse, x0, args=(X, y), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * n_heads,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                        "jac": lambda w: np.ones_like(w)}],
                          options={"ftol": 1e-12, "maxiter": 500})
        for w in (np.clip(result.x, 0.0, None), x0):  # SLSQP may end a hair outside the bounds
            w = w / w.sum()
            f = blend_mse(w, X, y)[0]
            if f < best_f:
                best_w, best_f = w, f
    return best_w


def cross_fitted_rmse(oof: pd.DataFrame, fit: Callable[[pd.DataFrame], dict[str, float]]) -> float | None:
    """The blend's RMSE when each fold's rows are scored with weights fitted without them.

    For each fold k: `fit` (what --blend auto does) on the other folds' OOF rows, then fold k's rows
    scored with those weights (weighted sum of the heads, clipped to 1..100, as the submission is). The
    fitted blend's OOF RMSE was minimised on the rows it reports; this one was not. None with one fold.
    """
    folds = sorted(oof["fold"].unique())
    if len(folds) < 2:
        return None
    pred = np.empty(len(oof))
    for k in folds:
        out = (oof["fold"] == k).to_numpy()
        weights = fit(oof[~out])
        heads = [h for h, w in weights.items() if w]
        pred[out] = np.clip(oof.loc[out, heads].to_numpy() @ np.array([weights[h] for h in heads]), 1, 100)
    return rmse(pred, oof["target"].to_numpy())
