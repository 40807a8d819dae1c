"""Out-of-fold predictions of every head of several runs, side by side, for fitting and reporting a blend.

Runs in one ensemble must share their folds (`train-backbone --folds-from RUN`): then every row's
predictions, from every run, come from models that never saw that row in the same split, and the
ensemble's per-fold RMSE means what a single run's does.
"""
from __future__ import annotations

import pandas as pd

from pawcore.data import ID_COL
from pawcore.errors import ArtifactError
from pawcore.folds import read_trained_folds, same_folds
from pawcore.oof import merge_oof
from pawcore.run import RunDir, run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr.manifest import Stage2Manifest

from .ensemble import HEAD_KINDS, head_name


def run_oof(run: RunDir) -> pd.DataFrame:
    """One run's OOF rows of every head (Id, fold, target, nn, svr[, gbdt], blend: 0.5 NN + 0.5 SVR), the
    heads beside the SVR as its stage-2 manifest lists them."""
    stage2 = Stage2Manifest.read(run)
    others = {kind: Stage2Manifest.oof_file_of(run, kind) for kind in stage2.head_kinds if kind != "svr"}
    return merge_oof(Stage1Manifest.oof_file(run), Stage2Manifest.oof_file(run), extra=others)


def check_shared_folds(artifacts_dir: str, runs: list[str], trained_on: dict[str, str]) -> None:
    """Every run's folds.csv is the one its stage 1 trained on (`trained_on[run]`: the SHA-256 its stage-1
    manifest recorded), and all runs have identical folds."""
    folds = {run: read_trained_folds(run_dir(artifacts_dir, run).folds_csv, trained_on[run], run) for run in runs}
    first = runs[0]
    for run in runs[1:]:
        if not same_folds(folds[first], folds[run]):
            raise ArtifactError(
                f"Runs {first!r} and {run!r} have different folds (Ids or fold ids in their folds.csv differ), "
                f"so their out-of-fold predictions cannot be blended. Re-train one with the other's folds: "
                f"`python pipeline.py train-backbone --run NEW --folds-from {first} ...`, then fit-svr --run NEW, "
                f"and ensemble --runs {first},NEW.")


def ensemble_oof(artifacts_dir: str, runs: list[str]) -> pd.DataFrame:
    """Id, fold, target, one column per head ('run:nn', 'run:svr', 'run:gbdt', ...), and the mean NN / mean SVR
    heads ('nn', 'svr'; with one run these equal that run's heads exactly)."""
    merged = None
    for run in runs:
        oof = run_oof(run_dir(artifacts_dir, run))
        kinds = [c for c in oof.columns if c in HEAD_KINDS]
        part = oof[[ID_COL, "fold", "target", *kinds]].rename(columns={k: head_name(run, k) for k in kinds})
        if merged is None:
            merged = part
            continue
        if set(part[ID_COL]) != set(merged[ID_COL]):
            raise ArtifactError(f"Run {run!r} has out-of-fold predictions for {len(part)} rows, run {runs[0]!r} "
                                f"for {len(merged)}: a run has unfinished folds. Finish them (`python pipeline.py "
                                f"status --run RUN`), then fit-svr.")
        merged = merged.merge(part.drop(columns=["fold", "target"]), on=ID_COL)
    nn_cols = [head_name(run, "nn") for run in runs]
    svr_cols = [head_name(run, "svr") for run in runs]
    return merged.assign(nn=merged[nn_cols].mean(axis=1), svr=merged[svr_cols].mean(axis=1))
