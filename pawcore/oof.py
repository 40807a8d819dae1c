"""Out-of-fold predictions of a run's two heads, read back from the stages' CSVs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import ID_COL


def merge_oof(nn_csv: Path, svr_csv: Path, blend: float = 0.5, extra: dict[str, Path] | None = None) -> pd.DataFrame:
    """The NN head's and the SVR head's OOF rows side by side (Id, fold, target, nn, svr, blend), and one column
    per other head in `extra` ({kind: its OOF csv}, e.g. {"gbdt": oof_gbdt.csv}); blend is NN and SVR's."""
    nn = pd.read_csv(nn_csv, dtype={ID_COL: str})
    both = nn.rename(columns={"pred": "nn"})
    for kind, path in {"svr": svr_csv, **(extra or {})}.items():
        head = pd.read_csv(path, dtype={ID_COL: str})
        both = both.merge(head[[ID_COL, "pred"]].rename(columns={"pred": kind}), on=ID_COL)
    return both.assign(blend=blend * both["nn"] + (1 - blend) * both["svr"])
