"""Out-of-fold predictions of a run's two heads, read back from the stages' CSVs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import ID_COL


def merge_oof(nn_csv: Path, svr_csv: Path, blend: float = 0.5) -> pd.DataFrame:
    """The NN head's and the SVR head's OOF rows side by side (Id, fold, target, nn, svr, blend)."""
    nn = pd.read_csv(nn_csv, dtype={ID_COL: str})
    svr = pd.read_csv(svr_csv, dtype={ID_COL: str})
    both = nn.rename(columns={"pred": "nn"}).merge(svr[[ID_COL, "pred"]].rename(columns={"pred": "svr"}), on=ID_COL)
    return both.assign(blend=blend * both["nn"] + (1 - blend) * both["svr"])
