#!/usr/bin/env python
"""Score a submission.csv against held-out labels (e.g. ../shared/data/oxford-pets-370/test_labels.csv).

    python benchmarks/score_submission.py artifacts/oxford/submission.csv \
        ../shared/data/oxford-pets-370/test_labels.csv --train-csv ../shared/data/oxford-pets-370/train.csv

Prints the test RMSE and, with --train-csv, the RMSE of predicting the training mean. With
--compare OTHER.csv, also the other submission's RMSE and the spread of the difference between the two
over paired bootstrap resamples of the photos (how much of a gap a small test set can show by chance).
Not part of the pipeline: the pipeline never reads test labels.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def scored_rows(submission: str | Path, labels: str | Path) -> pd.DataFrame:
    """The labels beside the submission's predictions (Id, Pawpularity_true, Pawpularity_pred); a
    ValueError when the two files hold different Ids."""
    sub = pd.read_csv(submission, dtype={"Id": str})
    truth = pd.read_csv(labels, dtype={"Id": str})
    if sorted(sub["Id"]) != sorted(truth["Id"]):
        raise ValueError(f"{submission} and {labels} hold different Ids")
    return truth.merge(sub, on="Id", suffixes=("_true", "_pred"))


def rows_rmse(both: pd.DataFrame) -> float:
    """Test RMSE of scored_rows' predictions."""
    return float(np.sqrt(np.mean((both["Pawpularity_pred"] - both["Pawpularity_true"]) ** 2)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submission")
    p.add_argument("labels")
    p.add_argument("--train-csv", help="train.csv, for the predict-the-mean baseline")
    p.add_argument("--compare", metavar="OTHER_CSV", help="another submission for the same photos")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for --compare")
    args = p.parse_args()
    try:
        both = scored_rows(args.submission, args.labels)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rmse = rows_rmse(both)
    print(f"test RMSE {rmse:.3f} on {len(both)} images")
    if args.train_csv:
        mean = pd.read_csv(args.train_csv)["Pawpularity"].mean()
        base = float(np.sqrt(np.mean((mean - both["Pawpularity_true"]) ** 2)))
        print(f"mean baseline (train mean {mean:.2f}) test RMSE {base:.3f}")
    if args.compare:
        other = pd.read_csv(args.compare, dtype={"Id": str}).set_index("Id")["Pawpularity"]
        if sorted(other.index) != sorted(both["Id"]):
            print(f"error: {args.compare} and {args.submission} hold different Ids", file=sys.stderr)
            return 2
        truth, pred = both["Pawpularity_true"].to_numpy(), both["Pawpularity_pred"].to_numpy()
        alt = other.loc[both["Id"]].to_numpy()
        rows = np.random.default_rng(0).integers(0, len(truth), size=(args.resamples, len(truth)))

        def rmse_of(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return np.sqrt(np.mean((p[idx] - truth[idx]) ** 2, axis=-1))

        alt_rmse = float(rmse_of(alt, np.arange(len(truth))))
        spread = float(np.std(rmse_of(pred, rows) - rmse_of(alt, rows)))
        print(f"{args.compare}: test RMSE {alt_rmse:.3f}; difference {rmse - alt_rmse:+.3f} "
              f"(paired bootstrap sd {spread:.3f} over {args.resamples} resamples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
