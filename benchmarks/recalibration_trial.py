#!/usr/bin/env python
"""Would a linear recalibration of each head help on unseen photos? A trial on the held-out benchmark's runs.

    .venv/bin/python benchmarks/recalibration_trial.py --work artifacts/heldout [--setting new]

Models for this task squeeze their predictions towards the mean. A linear map y ~ a + b * pred, fitted on
a head's OOF predictions, stretches them back. For every split that `benchmarks/heldout_oxford.py` finished,
and each head (NN, SVR) and blend 0.5, this fits the map on the run's OOF rows and applies it to the
split's test submission of that head, then scores raw and recalibrated predictions on the 50 held-out
labels. It also reports the cross-fitted OOF estimate of the same recalibration (each fold mapped with a
fit on the other folds), which is what the pipeline could see without test labels. Nothing here changes
the pipeline: recalibration is added only if these numbers say it helps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.ensemble_oof import run_oof  # noqa: E402
from pawcore.metrics import clip_score, rmse  # noqa: E402
from pawcore.run import run_dir  # noqa: E402

HEADS = {"nn": "infer-nn", "svr": "infer-svr", "blend": "infer-blend0.5"}


def linear_map(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit target ~ a + b * pred."""
    b, a = np.polyfit(pred, target, 1)
    return float(a), float(b)


def cross_fitted(oof: pd.DataFrame, column: str) -> float:
    """OOF RMSE of the recalibrated column, each fold mapped with a fit on the other folds."""
    out = np.empty(len(oof))
    for k in oof["fold"].unique():
        rows = (oof["fold"] == k).to_numpy()
        a, b = linear_map(oof.loc[~rows, column].to_numpy(), oof.loc[~rows, "target"].to_numpy())
        out[rows] = clip_score(a + b * oof.loc[rows, column].to_numpy())
    return rmse(out, oof["target"])


def split_rows(split: Path, setting: str) -> list[dict]:
    run = split / "artifacts" / setting
    oof = run_oof(run_dir(run.parent, run.name))  # its blend column is the 50/50 blend, as infer-blend0.5
    labels = pd.read_csv(split / "test_labels.csv", dtype={"Id": str}).set_index("Id")["Pawpularity"]
    rows = []
    for head, folder in HEADS.items():
        sub = pd.read_csv(run / folder / "submission.csv", dtype={"Id": str}).set_index("Id")["Pawpularity"]
        y = labels.loc[sub.index].to_numpy(float)
        a, b = linear_map(oof[head].to_numpy(), oof["target"].to_numpy())
        rows.append({"split": split.name, "head": head, "a": a, "b": b,
                     "oof raw": rmse(oof[head], oof["target"]), "oof recal (cross-fitted)": cross_fitted(oof, head),
                     "test raw": rmse(sub.to_numpy(), y), "test recal": rmse(clip_score(a + b * sub.to_numpy()), y)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "heldout", help="heldout_oxford.py's --work")
    parser.add_argument("--setting", default="new", help="Stage-2 setting (run name) to try it on (default: new).")
    args = parser.parse_args(argv)
    splits = sorted(p for p in args.work.glob("split*") if (p / f"results-{args.setting}.json").is_file())
    if not splits:
        parser.error(f"no finished split of setting {args.setting!r} in {args.work}: run heldout_oxford.py first")
    table = pd.DataFrame([row for split in splits for row in split_rows(split, args.setting)])
    print(f"Linear recalibration on {len(splits)} split(s), setting {args.setting!r} (RMSE; a + b x pred):\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    means = table.groupby("head")[["oof raw", "oof recal (cross-fitted)", "test raw", "test recal"]].agg(["mean", "std"])
    print("\nMean and sd over the splits:\n")
    print(means.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
