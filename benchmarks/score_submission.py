#!/usr/bin/env python
"""Score a submission.csv against held-out labels (e.g. ../shared/data/oxford-pets-370/test_labels.csv).

    python benchmarks/score_submission.py artifacts/oxford/submission.csv \
        ../shared/data/oxford-pets-370/test_labels.csv --train-csv ../shared/data/oxford-pets-370/train.csv

Prints the test RMSE and, with --train-csv, the RMSE of predicting the training mean. Not part of the
pipeline: the pipeline never reads test labels.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submission")
    p.add_argument("labels")
    p.add_argument("--train-csv", help="train.csv, for the predict-the-mean baseline")
    args = p.parse_args()
    sub = pd.read_csv(args.submission, dtype={"Id": str})
    labels = pd.read_csv(args.labels, dtype={"Id": str})
    if sorted(sub["Id"]) != sorted(labels["Id"]):
        print(f"error: {args.submission} and {args.labels} hold different Ids", file=sys.stderr)
        return 2
    both = labels.merge(sub, on="Id", suffixes=("_true", "_pred"))
    rmse = float(np.sqrt(np.mean((both["Pawpularity_pred"] - both["Pawpularity_true"]) ** 2)))
    print(f"test RMSE {rmse:.3f} on {len(both)} images")
    if args.train_csv:
        mean = pd.read_csv(args.train_csv)["Pawpularity"].mean()
        base = float(np.sqrt(np.mean((mean - both["Pawpularity_true"]) ** 2)))
        print(f"mean baseline (train mean {mean:.2f}) test RMSE {base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
