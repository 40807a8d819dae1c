"""Choosing the SVR's sources on OOF: greedy forward selection, with and without the scaler.

Start from nothing; at each step add the source whose addition gives the lowest SVR OOF RMSE over the
run's folds; stop when no source lowers it. Run once per scaler setting and keep the better. (The
winning 2021 solution chose its frozen-model concatenation the same way, by hill climbing on OOF.)

The chosen set's OOF RMSE was minimised on those same rows, so it is slightly optimistic.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from pawcore.metrics import rmse

from .head import SVRParams, fit_head

log = logging.getLogger(__name__)

# (sources in order, fold) -> that fold's (N, D) float32 matrix of all rows
MatrixFn = Callable[[tuple[str, ...], int], np.ndarray]


def oof_rmse(matrix: MatrixFn, names: tuple[str, ...], fold_of: np.ndarray, targets: np.ndarray,
             params: SVRParams, scale: bool, folds: Sequence[int] | None = None) -> tuple[float, int]:
    """(SVR OOF RMSE over the rows of `folds`, feature width) of one source set.

    `folds` defaults to every fold in `fold_of`; a partial stage 1 (`--allow-partial`) passes the trained
    ones, since a missing fold has no fine-tuned backbone to embed its rows with.
    """
    folds = np.unique(fold_of) if folds is None else np.asarray(folds)
    pred = np.full(len(targets), np.nan)
    width = 0
    for k in folds:
        X = matrix(names, int(k))
        width = int(X.shape[1])
        tr, va = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        pred[va] = fit_head(X, tr, va, targets, params, scale)[1]
    scored = np.isin(fold_of, folds)
    return rmse(pred[scored], targets[scored]), width


@dataclass
class Selection:
    sources: list[str]
    standardize: bool
    rmse: float
    table: pd.DataFrame  # one row per evaluated set: step, sources, standardize, n_features, oof_rmse


def forward_select(candidates: list[str], matrix: MatrixFn, fold_of: np.ndarray, targets: np.ndarray,
                   params: SVRParams, scalers: tuple[bool, ...] = (False, True),
                   folds: Sequence[int] | None = None) -> Selection:
    """Greedy forward selection of `candidates` on OOF RMSE, once per scaler setting; the better wins.

    Table rows: 'alone' (each source by itself), 'step N' (the set after the N-th addition), 'chosen'.
    """
    rows, finals = [], []
    for scale in scalers:
        scores: dict[tuple[str, ...], tuple[float, int]] = {}  # each set fitted once per scaler setting

        def score(names: tuple[str, ...]) -> tuple[float, int]:
            if names not in scores:
                t0 = time.perf_counter()
                scores[names] = oof_rmse(matrix, names, fold_of, targets, params, scale, folds)
                log.info("  %s, scaler %s: %d features, OOF RMSE %.4f (%.1fs)", "+".join(names),
                         "on" if scale else "off", scores[names][1], scores[names][0], time.perf_counter() - t0)
            return scores[names]

        for c in candidates:
            rows.append(("alone", (c,), scale, *score((c,))))
        chosen: tuple[str, ...] = ()
        best = np.inf
        while len(chosen) < len(candidates):
            trials = {chosen + (c,): score(chosen + (c,)) for c in candidates if c not in chosen}
            names, (value, width) = min(trials.items(), key=lambda kv: kv[1][0])
            if value >= best:  # no source lowers OOF RMSE: stop
                break
            chosen, best = names, value
            rows.append((f"step {len(chosen)}", chosen, scale, value, width))
        finals.append((best, scale, chosen, scores[chosen][1]))
    best, scale, chosen, width = min(finals, key=lambda f: f[0])
    rows.append(("chosen", chosen, scale, best, width))
    table = pd.DataFrame([{"step": step, "sources": "+".join(names), "standardize": s, "n_features": w,
                           "oof_rmse": v} for step, names, s, v, w in rows])
    return Selection(list(chosen), scale, float(best), table)


def format_selection(table: pd.DataFrame) -> str:
    shown = table.assign(standardize=table["standardize"].map({True: "on", False: "off"}))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
