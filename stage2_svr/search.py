"""The OOF RMSE of one source set at every point of a grid of SVR settings (C, gamma factor).

`--C auto` chooses C and the kernel width on the run's folds. The width is a factor of `--gamma`
('scale': 1 / (n_features x variance of the SVR's input)), so one grid fits any feature width.
Measured on the oxford run (320 photos, 5 folds; README): the best settings lie at C 100..3000 and
gamma 1/16..1/4 x scale, the error is flat across that valley, and epsilon (tried 0.1, 0.5, 1, 2, 4 at the
chosen C and gamma) only ever got worse above 0.1, so epsilon stays fixed (`--epsilon`).

Kernel reuse: for an RBF kernel on a CPU backend and up to KERNEL_REUSE_MAX_ROWS rows, each fold's
squared distances are computed once (on centred rows, which keeps |x|^2 + |y|^2 - 2 x.y accurate) and
every grid point is a libsvm fit on the precomputed kernel exp(-gamma x distance): about 20x faster than
`SVR(kernel='rbf')` at 256 rows. It is the same problem, not the same float operations, so libsvm's
solver may stop at a slightly other point within its tolerance: the saved head's predictions (fitted
with kernel='rbf') agree with the search's to ~1e-3 (measured: <= 4e-4 on the oxford run).
cuML (GPU) and larger data fit the backend's own SVR at each grid point.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.svm import SVR

from pawcore.metrics import clip_score, rmse

from .head import Prep, SVRParams, base_gamma, fit_head, make_prep

GridPoint = tuple[float, float]  # (C, gamma factor)
# Ranking source sets: 9 points spanning the valley measured on the oxford run.
COARSE: tuple[GridPoint, ...] = tuple((C, g) for C in (30.0, 300.0, 3000.0) for g in (1 / 16, 1 / 4, 1.0))
# The chosen set's settings: C 10..3000 x gamma 1/32..1 x scale (36 points).
FINE: tuple[GridPoint, ...] = tuple((C, g) for C in (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
                                    for g in (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0))
KERNEL_REUSE_MAX_ROWS = 4000

# (sources in order, fold) -> (that fold's (N, D) float32 matrix of all rows, the sources' block widths)
MatrixFn = Callable[[tuple[str, ...], int], tuple[np.ndarray, tuple[int, ...]]]


def grid_oof(matrix: MatrixFn, names: tuple[str, ...], fold_of: np.ndarray, targets: np.ndarray,
             params: SVRParams, prep: Prep, grid: Sequence[GridPoint],
             folds: Sequence[int] | None = None) -> tuple[dict[GridPoint, float], int]:
    """({grid point: SVR OOF RMSE over the rows of `folds`}, feature width) of one source set.

    `folds` defaults to every fold in `fold_of`; a partial stage 1 (`--allow-partial`) passes the trained
    ones, since a missing fold has no fine-tuned backbone to embed its rows with.
    """
    folds = np.unique(fold_of) if folds is None else np.asarray(folds)
    pred = {p: np.full(len(targets), np.nan) for p in grid}
    width = 0
    for k in folds:
        X, widths = matrix(names, int(k))
        width = int(X.shape[1])
        tr, va = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        for p, fold_pred in fold_grid(X, widths, tr, va, targets, params, prep, grid).items():
            pred[p][va] = fold_pred
    scored = np.isin(fold_of, folds)
    return {p: rmse(pred[p][scored], targets[scored]) for p in grid}, width


def fold_grid(X: np.ndarray, widths: Sequence[int], tr: np.ndarray, va: np.ndarray, targets: np.ndarray,
              params: SVRParams, prep: Prep, grid: Sequence[GridPoint]) -> dict[GridPoint, np.ndarray]:
    """{grid point: predictions for rows `va` of the head fitted on rows `tr` with that C and gamma factor}."""
    if params.kernel == "rbf" and params.backend != "cuml" and len(tr) + len(va) <= KERNEL_REUSE_MAX_ROWS:
        return _precomputed_grid(X, widths, tr, va, targets, params, prep, grid)
    return {(C, g): fit_head(X, tr, va, targets, replace(params, C=C, gamma_factor=g), prep, widths)[1]
            for C, g in grid}


def _precomputed_grid(X: np.ndarray, widths: Sequence[int], tr: np.ndarray, va: np.ndarray, targets: np.ndarray,
                      params: SVRParams, prep: Prep, grid: Sequence[GridPoint]) -> dict[GridPoint, np.ndarray]:
    """fold_grid on one kernel matrix: the input prepared exactly as fit_head prepares it (same steps,
    fitted on rows `tr`), squared distances once, then exp(-gamma x distance) per gamma."""
    rows = np.concatenate([tr, va])
    steps = Pipeline(make_prep(prep, widths)).fit(X[tr]) if prep != Prep() else None
    Xt = steps.transform(X[rows]) if steps is not None else X[rows]
    base = base_gamma(params.gamma, Xt[:len(tr)])
    Xt = np.asarray(Xt, dtype=np.float64)
    Xt = Xt - Xt[:len(tr)].mean(axis=0)  # distances do not move; |x|^2 + |y|^2 - 2 x.y cancels far less
    sq = np.einsum("ij,ij->i", Xt, Xt)
    dist = np.maximum(sq[:, None] + sq[None, :len(tr)] - 2.0 * Xt @ Xt[:len(tr)].T, 0.0)  # (rows, train rows)
    out = {}
    for g in sorted({g for _, g in grid}):
        K = np.exp(-g * base * dist)
        for C in sorted({C for C, g2 in grid if g2 == g}):
            svr = SVR(kernel="precomputed", C=C, epsilon=params.epsilon).fit(K[:len(tr)], targets[tr])
            out[(C, g)] = clip_score(svr.predict(K[len(tr):]))
    return out


def best_point(scores: dict[GridPoint, float]) -> tuple[GridPoint, float]:
    """The grid point with the lowest OOF RMSE; ties go to the smaller C, then the wider kernel (smaller
    gamma factor), the more regularised fit."""
    point = min(scores, key=lambda p: (round(scores[p], 9), p[0], p[1]))
    return point, scores[point]
