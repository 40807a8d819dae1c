"""`pipeline.py status`: which folds of each stage are done, being trained, or missing.

Reads only: it decodes no image and writes nothing (each train-backbone job assembles the stage-1 manifest
itself when it ends). It looks at small files (done.json, lock files, manifests), so it stays fast on a
big run.
"""
from __future__ import annotations

import csv
from pathlib import Path

from pawcore.errors import ArtifactError
from pawcore.locks import is_locked
from pawcore.run import RunDir, run_dir
from stage1_backbone.manifest import Stage1Manifest
from stage2_svr.manifest import Stage2Manifest


def fold_states(run: RunDir, n_folds: int) -> dict[str, list[int]]:
    states: dict[str, list[int]] = {"done": [], "training now": [], "interrupted": [], "not started": []}
    for k in range(n_folds):
        if Stage1Manifest.done_file(run, k).is_file():
            states["done"].append(k)
        elif is_locked(Stage1Manifest.lock_file(run, k)):
            states["training now"].append(k)
        elif Stage1Manifest.last_checkpoint(run, k).is_file():
            states["interrupted"].append(k)
        else:
            states["not started"].append(k)
    return states


def fold_count(folds_csv: Path) -> int:
    """The number of folds in a run's folds.csv, read with the csv module: status imports no pandas."""
    try:
        with open(folds_csv, newline="") as f:
            return max(int(row["fold"]) for row in csv.DictReader(f)) + 1
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{folds_csv} is damaged ({type(e).__name__}: {e}): it should hold Id,fold rows. "
                            f"Restore it, or start the run again with train-backbone.") from None


def status(artifacts_dir: str, run_name: str) -> str:
    run = run_dir(artifacts_dir, run_name)
    states = fold_states(run, fold_count(run.folds_csv))
    lines = [f"run {run_name!r} in {run.root}", "stage1 (train-backbone): " + "; ".join(
        f"{name} {ks}" for name, ks in states.items() if ks)]
    stage1, unreadable = None, ""
    try:
        stage1 = Stage1Manifest.read(run) if Stage1Manifest.path(run).is_file() else None
    except ArtifactError as e:  # damaged: say so, and go on with the rest and the other runs
        unreadable = f"  manifest: UNREADABLE: {e}"
    listed = sorted(stage1.folds) if stage1 else []
    lines.append(unreadable or (f"  manifest: folds {listed}" if listed else "  manifest: none yet"))
    unlisted = sorted(set(states["done"]) - set(listed))
    if unlisted and not states["training now"]:
        lines.append(f"  folds {unlisted} are done but not in the manifest (trained with other settings, or their "
                     f"job died before assembling): re-run train-backbone for run {run_name!r} with the settings "
                     f"you want; finished folds are skipped and the manifest is re-assembled.")
    lines.append("stage2 (fit-svr): " + _stage2_state(run, stage1))
    sub = run.submission_csv
    lines.append(f"submission: {sub}" if sub.is_file() else "submission: none (run infer)")
    return "\n".join(lines)


def _stage2_state(run: RunDir, stage1: Stage1Manifest | None) -> str:
    if not Stage2Manifest.path(run).is_file():
        return "not run"
    try:
        stage2 = Stage2Manifest.read(run)
    except ArtifactError as e:  # damaged, or written by another version: say so, and go on with the others
        return f"UNREADABLE: {e}"
    current = stage1 is not None and stage2.stage1_manifest_sha256 == stage1.digest()
    return f"folds {sorted(stage2.folds)}, heads {'+'.join(stage2.head_kinds)}, " + ("built on the current stage 1" if current
                                               else "STALE: stage 1 changed since; re-run fit-svr")


def runs_in(artifacts_dir: str) -> list[str]:
    """Every run folder (one with a folds.csv) under the artifacts dir."""
    return sorted(p.parent.name for p in Path(artifacts_dir).glob("*/folds.csv"))


def print_status(artifacts_dir: str, run_name: str = "") -> None:
    names = [run_name] if run_name else runs_in(artifacts_dir)
    if not names or not run_dir(artifacts_dir, names[0]).folds_csv.is_file():
        what = f"No run {run_name!r}" if run_name else "No runs"
        raise ArtifactError(f"{what} in {artifacts_dir} (no folds.csv). Start one with "
                            f"`python pipeline.py train-backbone --run NAME --data-dir D`, or pass --artifacts-dir.")
    print("\n\n".join(status(artifacts_dir, name) for name in names))
