"""Scores on the 1..100 Pawpularity scale."""
from __future__ import annotations

import numpy as np


def clip_score(pred) -> np.ndarray:
    """Predictions as Pawpularity scores: float64, clipped to the target's range 1..100."""
    return np.clip(np.asarray(pred, np.float64), 1, 100)


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def fold_baselines(target: np.ndarray, fold: np.ndarray) -> dict[str, float]:
    """'Predict the mean', out of fold: for fold k, the mean target of all training rows outside fold k.

    Computed from the whole training set (not just the folds trained so far) and kept in the stage-1
    manifest, so every later table has the same baseline, even without the training data.
    """
    target, fold = np.asarray(target, np.float64), np.asarray(fold)
    return {str(k): float(target[fold != k].mean()) for k in np.unique(fold)}


def oof_table(oof, heads: dict[str, str], baselines: dict[str, float]):
    """RMSE per fold and overall for the mean baseline and each head.

    `oof` has columns `fold`, `target` and one prediction column per head ({label: column}).
    """
    import pandas as pd

    oof = oof.assign(baseline=oof["fold"].astype(str).map(baselines))
    columns = {"mean baseline": "baseline", **heads}
    rows = []
    for fold, part in oof.groupby("fold"):
        rows.append({"fold": str(fold), "n": len(part),
                     **{label: rmse(part[col], part["target"]) for label, col in columns.items()}})
    rows.append({"fold": "overall", "n": len(oof),
                 **{label: rmse(oof[col], oof["target"]) for label, col in columns.items()}})
    return pd.DataFrame(rows)


def format_table(table) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}")
