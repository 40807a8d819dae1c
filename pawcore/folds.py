"""Cross-validation folds: made once per run as `folds.csv` (Id, fold) and read by every later stage.

Stratified on the *binned* target, never on the raw 1..100 score: with ~100 distinct values many
would have fewer members than folds and StratifiedKFold would warn and mis-balance.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from .artifacts import sha256_file, write_csv
from .data import ID_COL, TARGET_COL
from .errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)


def target_bins(target: np.ndarray, n_folds: int) -> np.ndarray:
    """Equal-width bins, Sturges' count (14 for the 9,912 real rows), as top Pawpularity solutions do.

    Bins with fewer rows than folds cannot be stratified; each is merged into its smaller neighbour.
    """
    target = np.asarray(target, dtype=np.float64)
    n_bins = max(1, int(np.floor(1 + np.log2(len(target)))))
    labels = pd.cut(target, bins=n_bins, labels=False)
    groups = [[g] for g in sorted(set(labels))]  # each group: the bin labels merged into it
    counts = [int((labels == g[0]).sum()) for g in groups]
    while len(groups) > 1 and min(counts) < n_folds:
        i = int(np.argmin(counts))
        j = i - 1 if i == len(groups) - 1 or (i > 0 and counts[i - 1] <= counts[i + 1]) else i + 1
        lo, hi = min(i, j), max(i, j)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]
        counts[lo:hi + 1] = [counts[lo] + counts[hi]]
    merged = np.empty_like(labels)
    for new_label, group in enumerate(groups):
        merged[np.isin(labels, group)] = new_label
    return merged


def make_folds(train: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    if n_folds < 2:
        raise ConfigError(f"--n-folds {n_folds}: need at least 2 folds for out-of-fold predictions.")
    if len(train) < 2 * n_folds:
        raise ConfigError(f"--n-folds {n_folds} needs at least {2 * n_folds} training rows; got {len(train)}. "
                          f"Use fewer folds or more data.")
    fold = np.full(len(train), -1, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    bins = target_bins(train[TARGET_COL].to_numpy(), n_folds)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(train)), bins)):
        fold[val_idx] = k
    return pd.DataFrame({ID_COL: train[ID_COL].to_numpy(), "fold": fold})


def load_or_make_folds(path: Path, train: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Read `folds.csv` if the run has one (checking it still fits train.csv), else make and save it."""
    if path.is_file():
        folds = pd.read_csv(path, dtype={ID_COL: str})
        if set(folds[ID_COL]) != set(train[ID_COL]) or len(folds) != len(train):
            raise ArtifactError(f"{path} was made for a different train.csv (Ids differ). Use a new --run, "
                                f"or delete {path} to re-split (every stage of this run must then be re-run).")
        found = int(folds["fold"].max()) + 1
        if found != n_folds:
            raise ArtifactError(f"{path} has {found} folds but --n-folds is {n_folds}. Pass --n-folds {found}, "
                                f"or use a new --run.")
        return folds
    folds = make_folds(train, n_folds, seed)
    write_csv(path, folds)
    log.info("Wrote %s (%d folds, seed %d)", path, n_folds, seed)
    return folds


def read_folds(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ArtifactError(f"{path} not found; run `python pipeline.py train-backbone` first.")
    return pd.read_csv(path, dtype={ID_COL: str})


def read_trained_folds(path: Path, trained_sha256: str, run: str) -> pd.DataFrame:
    """The run's folds.csv, refused unless it is the file stage 1 trained on (the SHA-256 its manifest
    recorded): other folds would put training rows of a fold's model into its out-of-fold predictions."""
    if sha256_file(path) != trained_sha256:
        raise ArtifactError(f"{path} changed after stage 1 of run {run!r} was trained. Restore it, or re-run "
                            f"`python pipeline.py train-backbone --run {run}` and fit-svr.")
    return read_folds(path)


def adopt_folds(source: Path, dest: Path, source_run: str) -> None:
    """`train-backbone --folds-from RUN`: copy RUN's folds.csv, so both runs split the rows identically.

    Runs with identical folds can be ensembled: their OOF predictions of a row all come from models
    that never saw that row. A run that already has other folds keeps them: we refuse instead of
    silently re-splitting under finished folds.
    """
    if not source.is_file():
        raise ArtifactError(f"--folds-from {source_run}: {source} not found. Train run {source_run!r} first "
                            f"(its train-backbone writes folds.csv), or check --artifacts-dir and the run name.")
    theirs = pd.read_csv(source, dtype={ID_COL: str})
    if dest.is_file():
        if not same_folds(pd.read_csv(dest, dtype={ID_COL: str}), theirs):
            raise ArtifactError(f"--folds-from {source_run}: this run already has {dest} with other folds. Use a "
                                f"new --run, or delete {dest} and this run's stage1/ and stage2/ to re-train.")
        return
    write_csv(dest, theirs)
    log.info("Copied %s to %s (folds shared with run %r)", source, dest, source_run)


def same_folds(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """The same Ids, each in the same fold (row order does not matter)."""
    if len(a) != len(b) or set(a[ID_COL]) != set(b[ID_COL]):
        return False
    fold_of = b.set_index(ID_COL)["fold"]
    return bool((a["fold"].to_numpy() == fold_of.loc[a[ID_COL]].to_numpy()).all())
