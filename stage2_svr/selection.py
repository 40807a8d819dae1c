"""Choosing the head on OOF: the sources by greedy forward selection, the input preparation (scaler,
balanced sources) and the SVR's C and kernel width from a grid.

For each preparation to try: start from nothing; at each step add the source whose addition gives the
lowest SVR OOF RMSE over the run's folds, each set scored at its best point of a coarse (C, gamma) grid;
stop when no source lowers it. Then the final set's C and gamma are chosen on a fine grid, and the
preparation with the lowest OOF RMSE wins. (The winning 2021 solution chose its frozen-model
concatenation the same way, by hill climbing on OOF.)

Everything here is chosen on the rows it is scored on, so the chosen OOF RMSE is optimistic;
stage2_svr/nested.py measures by how much.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .head import Prep, SVRParams, factor_words
from .search import GridPoint, MatrixFn, best_point, grid_oof

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Space:
    """What the choice ranges over: preparations, the grid that ranks source sets, the grid the chosen
    set's C and gamma come from (empty: keep the ranking grid's point), and whether to choose sources."""

    preps: tuple[Prep, ...] = (Prep(),)
    coarse: tuple[GridPoint, ...] = ((20.0, 1.0),)
    fine: tuple[GridPoint, ...] = ()
    select_sources: bool = True


@dataclass
class Selection:
    sources: list[str]
    prep: Prep
    C: float
    gamma_factor: float
    rmse: float
    table: pd.DataFrame  # one row per evaluated set: step, sources, standardize, balance, n_features, C, gamma, oof_rmse

    @property
    def standardize(self) -> bool:
        return self.prep.standardize


class _Scorer:
    """Each (source set, effective preparation, grid) scored once: (best OOF RMSE, its grid point, width)."""

    def __init__(self, matrix: MatrixFn, fold_of: np.ndarray, targets: np.ndarray, params: SVRParams,
                 folds: Sequence[int] | None):
        self.matrix, self.fold_of, self.targets, self.params = matrix, fold_of, targets, params
        self.folds = sorted(np.unique(fold_of)) if folds is None else list(folds)
        self.memo: dict[tuple, tuple[float, GridPoint, int]] = {}

    def effective(self, names: tuple[str, ...], prep: Prep) -> Prep:
        return prep.effective(self.matrix(names, int(self.folds[0]))[1])

    def __call__(self, names: tuple[str, ...], prep: Prep, grid: tuple[GridPoint, ...]) -> tuple[float, GridPoint, int]:
        key = (names, self.effective(names, prep), grid)
        if key not in self.memo:
            t0 = time.perf_counter()
            scores, width = grid_oof(self.matrix, names, self.fold_of, self.targets, self.params, key[1], grid,
                                     self.folds)
            point, value = best_point(scores)
            self.memo[key] = (value, point, width)
            log.info("  %s, %s: %d features, OOF RMSE %.4f at C=%g gamma=%g x %s (%d settings, %.1fs)",
                     "+".join(names), _prep_words(key[1]), width, value, point[0], point[1], self.params.gamma,
                     len(grid), time.perf_counter() - t0)
        return self.memo[key]


def forward_select(candidates: list[str], matrix: MatrixFn, fold_of: np.ndarray, targets: np.ndarray,
                   params: SVRParams, space: Space = Space(), folds: Sequence[int] | None = None) -> Selection:
    """The sources (greedy forward selection when `space.select_sources`, else all candidates), the
    preparation and (C, gamma factor) with the lowest OOF RMSE.

    Table rows: 'alone' (each source by itself), 'step N' (the set after the N-th addition), 'all' (the
    given set, without selection), 'grid' (the final set on the fine grid), 'chosen'.
    """
    score = _Scorer(matrix, fold_of, targets, params, folds)
    rows, finals = [], []
    for prep in space.preps:
        names, value, point, width = _greedy(candidates, prep, space, score, rows)
        if space.fine:
            value, point, width = score(names, prep, space.fine)
            rows.append(("grid", names, prep, width, point, value))
        finals.append((value, names, score.effective(names, prep), point, width))
    value, names, prep, point, width = min(finals, key=lambda f: f[0])
    rows.append(("chosen", names, prep, width, point, value))
    table = pd.DataFrame([{"step": step, "sources": "+".join(n), "standardize": p.standardize, "balance": p.balance,
                           "n_features": w, "C": pt[0], "gamma": pt[1], "oof_rmse": v}
                          for step, n, p, w, pt, v in rows])
    return Selection(list(names), prep, point[0], point[1], float(value), table)


def _greedy(candidates: list[str], prep: Prep, space: Space, score: _Scorer,
            rows: list) -> tuple[tuple[str, ...], float, GridPoint, int]:
    """Forward selection under one preparation on the coarse grid -> (set, OOF RMSE, grid point, width)."""
    if not space.select_sources:
        names = tuple(candidates)
        value, point, width = score(names, prep, space.coarse)
        rows.append(("all", names, prep, width, point, value))
        return names, value, point, width
    for c in candidates:
        value, point, width = score((c,), prep, space.coarse)
        rows.append(("alone", (c,), prep, width, point, value))
    chosen: tuple[str, ...] = ()
    best = (np.inf, space.coarse[0], 0)
    while len(chosen) < len(candidates):
        trials = {chosen + (c,): score(chosen + (c,), prep, space.coarse) for c in candidates if c not in chosen}
        names, result = min(trials.items(), key=lambda kv: kv[1][0])
        if result[0] >= best[0]:  # no source lowers OOF RMSE: stop
            break
        chosen, best = names, result
        rows.append((f"step {len(chosen)}", chosen, prep, result[2], result[1], result[0]))
    return chosen, *best


def _prep_words(prep: Prep) -> str:
    return f"scaler {'on' if prep.standardize else 'off'}, balance {'on' if prep.balance else 'off'}"


def format_selection(table: pd.DataFrame) -> str:
    onoff = {True: "on", False: "off"}
    shown = table.assign(standardize=table["standardize"].map(onoff), balance=table["balance"].map(onoff),
                         C=table["C"].map(lambda v: f"{v:g}"), gamma=table["gamma"].map(factor_words))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
