"""Scores on the 1..100 Pawpularity scale."""
from __future__ import annotations

import numpy as np


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def mean_baseline_oof(target: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold 'predict the mean': each row gets the mean target of the other folds."""
    target, fold = np.asarray(target, np.float64), np.asarray(fold)
    out = np.empty_like(target)
    for k in np.unique(fold):
        out[fold == k] = target[fold != k].mean()
    return out


def oof_table(oof, heads: dict[str, str]):
    """RMSE per fold and overall for the mean baseline and each head.

    `oof` has columns `fold`, `target` and one prediction column per head ({label: column}).
    """
    import pandas as pd

    oof = oof.assign(baseline=mean_baseline_oof(oof["target"].to_numpy(), oof["fold"].to_numpy()))
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
