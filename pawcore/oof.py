"""Out-of-fold predictions of a run's heads, read back from the stages' CSVs."""
from __future__ import annotations

import pandas as pd

from .data import ID_COL
from .run import RunDir


def merge_oof(run: RunDir, blend: float = 0.5) -> pd.DataFrame:
    """stage1/oof_nn.csv and stage2/oof_svr.csv side by side (Id, fold, target, nn, svr, blend)."""
    nn = pd.read_csv(run.stage("stage1") / "oof_nn.csv", dtype={ID_COL: str})
    svr = pd.read_csv(run.stage("stage2") / "oof_svr.csv", dtype={ID_COL: str})
    both = nn.rename(columns={"pred": "nn"}).merge(svr[[ID_COL, "pred"]].rename(columns={"pred": "svr"}), on=ID_COL)
    return both.assign(blend=blend * both["nn"] + (1 - blend) * both["svr"])
