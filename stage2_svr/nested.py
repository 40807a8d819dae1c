"""The honest estimate of stage 2: fit-svr's whole choice made again inside each outer fold.

fit-svr chooses the sources, the scaler, the balance, C and gamma on the OOF rows it then reports, so
its OOF RMSE is optimistic. Nested cross-validation measures by how much: for each outer fold k, the
same choice (stage2_svr/selection.py) runs on the other folds only (inner folds: the run's folds
without k), a head with the chosen settings is fitted on those rows and scores fold k. Fold k's rows
are never seen by its choice, so the nested OOF RMSE over all folds estimates what the procedure, not
one lucky choice, scores on photos it has never seen.

Caveat: stage 1 is not nested. The fine-tuned backbone of inner fold j (the `tuned` source) was
trained on rows that include the outer fold; only the choice of stage 2 is honest here.

Cost: about n_folds x the choice on (n_folds - 1) / n_folds of the rows. `--nested auto` runs it when
training rows x candidate sources <= NESTED_AUTO_MAX (e.g. 370 photos x 4 sources: on; the
competition's 9,912 photos x 4: off).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from pawcore.errors import ConfigError
from pawcore.metrics import rmse

from .head import SVRParams, fit_head
from .search import MatrixFn
from .selection import Space, forward_select

log = logging.getLogger(__name__)

NESTED_AUTO_MAX = 2000  # training rows x candidate sources up to which --nested auto runs it
MIN_FOLDS = 3  # an outer fold and at least two inner folds to choose on


@dataclass
class Nested:
    rmse: float
    pred: np.ndarray      # each scored row's prediction by the head chosen without its fold (nan elsewhere)
    table: pd.DataFrame   # per outer fold: its choice, the inner OOF RMSE it was chosen at, its own RMSE
    seconds: float


def nested_wanted(mode: str, n_rows: int, n_candidates: int, n_folds: int, anything_chosen: bool) -> tuple[bool, str]:
    """(run the nested estimate?, why) for --nested auto|on|off."""
    if mode == "off":
        return False, "--nested off"
    if not anything_chosen:
        return False, "nothing was chosen on OOF, so the OOF RMSE is already honest"
    if n_folds < MIN_FOLDS:
        if mode == "on":
            raise ConfigError(f"--nested on needs at least {MIN_FOLDS} folds (an outer fold and two inner ones to "
                              f"choose on); this run has {n_folds}. Use --nested off, or more folds in stage 1.")
        return False, f"{n_folds} folds: too few to nest"
    size = n_rows * n_candidates
    if mode == "auto" and size > NESTED_AUTO_MAX:
        return False, (f"--nested auto: {n_rows} rows x {n_candidates} sources = {size} > {NESTED_AUTO_MAX}; "
                       f"--nested on to run it anyway (about {n_folds}x the selection's time)")
    return True, f"--nested {mode}"


def nested_oof(candidates: list[str], matrix: MatrixFn, fold_of: np.ndarray, targets: np.ndarray,
               params: SVRParams, space: Space, folds: Sequence[int]) -> Nested:
    """The nested OOF predictions and RMSE over the rows of `folds` (see the module's docstring)."""
    t0 = time.perf_counter()
    pred = np.full(len(targets), np.nan)
    rows = []
    for k in folds:
        log.info("Nested estimate, outer fold %d: choosing on folds %s", k, [j for j in folds if j != k])
        choice, va, fold_pred = outer_fold(k, candidates, matrix, fold_of, targets, params, space, folds)
        pred[va] = fold_pred
        rows.append({"fold": k, "sources": "+".join(choice.sources), "standardize": choice.prep.standardize,
                     "balance": choice.prep.balance, "C": choice.C, "gamma": choice.gamma_factor,
                     "inner_oof_rmse": choice.rmse, "fold_rmse": rmse(pred[va], targets[va])})
    scored = np.isin(fold_of, folds)
    return Nested(rmse(pred[scored], targets[scored]), pred, pd.DataFrame(rows), time.perf_counter() - t0)


def outer_fold(k: int, candidates: list[str], matrix: MatrixFn, fold_of: np.ndarray, targets: np.ndarray,
               params: SVRParams, space: Space, folds: Sequence[int]):
    """(the choice made without fold k's rows, fold k's rows, their predictions by a head with that choice
    fitted on every other row, from fold k's matrix as fit-svr's own head for fold k is)."""
    inner = np.flatnonzero(fold_of != k)  # the only rows the choice may see
    choice = forward_select(candidates, rows_of(matrix, inner), fold_of[inner], targets[inner], params, space,
                            [j for j in folds if j != k])
    X, widths = matrix(tuple(choice.sources), k)
    va = np.flatnonzero(fold_of == k)
    chosen = SVRParams(params.backend, params.kernel, choice.C, params.epsilon, params.gamma, choice.gamma_factor)
    return choice, va, fit_head(X, inner, va, targets, chosen, choice.prep, widths)[1]


def rows_of(matrix: MatrixFn, rows: np.ndarray) -> MatrixFn:
    """`matrix` restricted to `rows` (in that order)."""
    def restricted(names: tuple[str, ...], fold: int) -> tuple[np.ndarray, tuple[int, ...]]:
        X, widths = matrix(names, fold)
        return X[rows], widths
    return restricted
