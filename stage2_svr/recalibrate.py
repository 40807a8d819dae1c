"""A linear map of the SVR head's scores, y ~ a + b x pred, that undoes their compression toward the mean.

An RBF SVR on a few hundred rows predicts a narrower range than the targets span, and photos it has never
seen spread wider still. Fold k's map is fitted on the OOF predictions of the *other* folds, so fold k's
OOF stays out of fold (cross-fitted), and is saved with fold k's head: infer applies each fold's own map,
so it still replays fit-svr's OOF exactly. On the repeated held-out benchmark this lowered the SVR head's
test RMSE in every split (benchmarks/RESULTS.md, recalibration trial); the NN head is not compressed.
"""
from __future__ import annotations

import numpy as np

from pawcore.metrics import clip_score

IDENTITY = (0.0, 1.0)


def linear_map(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit target ~ a + b * pred."""
    b, a = np.polyfit(np.asarray(pred, np.float64), np.asarray(target, np.float64), 1)
    return float(a), float(b)


def cross_fitted_maps(pred: np.ndarray, target: np.ndarray, fold_of: np.ndarray,
                      folds: list[int]) -> dict[int, tuple[float, float]]:
    """{fold k: the map fitted on the OOF rows of the other folds in `folds`}."""
    scored = np.isin(fold_of, folds)
    return {k: linear_map(pred[scored & (fold_of != k)], target[scored & (fold_of != k)]) for k in folds}


def apply_map(pred: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    """a + b * pred on the score range 1..100 (the identity map leaves clipped scores as they are)."""
    a, b = ab
    return clip_score(a + b * np.asarray(pred, np.float64))
