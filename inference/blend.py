"""The blend weight: final = w x NN + (1 - w) x SVR, given or chosen on out-of-fold predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pawcore.errors import ConfigError
from pawcore.metrics import rmse

GRID = np.round(np.arange(0, 101) / 100, 2)  # 0.00, 0.01, ..., 1.00


def parse_blend(text: str) -> float | None:
    """'auto' -> None (choose on OOF); a number must lie in [0, 1]."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        weight = float(text)
    except ValueError:
        raise ConfigError(f"--blend {text!r}: give a weight in [0, 1] (weight of the NN head) or 'auto'.") from None
    if not 0.0 <= weight <= 1.0 or not np.isfinite(weight):
        raise ConfigError(f"--blend {text}: must lie in [0, 1] (0 = SVR only, 1 = NN only), or be 'auto'.")
    return weight


def blend_curve(oof: pd.DataFrame) -> pd.DataFrame:
    """OOF RMSE of the blend for every weight on the 0.01 grid (columns: weight, rmse)."""
    nn, svr, y = oof["nn"].to_numpy(), oof["svr"].to_numpy(), oof["target"].to_numpy()
    return pd.DataFrame({"weight": GRID, "rmse": [rmse(np.clip(w * nn + (1 - w) * svr, 1, 100), y) for w in GRID]})


def best_weight(curve: pd.DataFrame) -> float:
    return float(curve.loc[curve["rmse"].idxmin(), "weight"])
