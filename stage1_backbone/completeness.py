"""Is stage 1 complete? A run with folds missing (say 2 of 5 fold jobs finished) is refused downstream.

fit-svr and infer would otherwise build a submission from the folds present without a word. They go on
with a partial stage 1 only when given --allow-partial, and record it (stage-2 manifest, report.md).
"""
from __future__ import annotations

import logging
import shlex

from pawcore.artifacts import read_json
from pawcore.errors import ArtifactError
from pawcore.run import RunDir

from .config import MODEL_KEYS, TrainConfig

log = logging.getLogger(__name__)


def missing_folds(stage1: dict) -> list[int]:
    return sorted(set(range(int(stage1["n_folds"]))) - {int(k) for k in stage1["folds"]})


def train_missing_command(run: RunDir, stage1: dict, missing: list[int]) -> str:
    """The train-backbone command that trains the missing folds with the finished folds' settings."""
    first = min(int(k) for k in stage1["folds"])
    train = read_json(run.fold_dir("stage1", first) / "done.json")["train"]
    args = ["python", "pipeline.py", "train-backbone", "--data-dir", stage1["data_dir"],
            "--artifacts-dir", str(run.artifacts_dir), "--run", run.run, "--folds", ",".join(map(str, missing))]
    for key in MODEL_KEYS:  # only what differs from today's defaults, so the command stays short
        value = train.get(key, getattr(TrainConfig, key))
        if value == getattr(TrainConfig, key):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return shlex.join(args)


def check_complete(run: RunDir, stage1: dict, allow_partial: bool, command: str) -> dict | None:
    """None when every fold of stage 1 is there; with folds missing, an ArtifactError naming them and
    the command that trains them, or (--allow-partial) a record of what is used, for the manifest."""
    missing = missing_folds(stage1)
    if not missing:
        return None
    present = sorted(int(k) for k in stage1["folds"])
    n_folds = int(stage1["n_folds"])
    if not allow_partial:
        raise ArtifactError(
            f"Stage 1 of run {run.run!r} is incomplete: {len(present)} of {n_folds} folds trained ({present}); "
            f"fold(s) {missing} are missing. Train them (jobs still running? check `python pipeline.py status "
            f"--run {run.run} --artifacts-dir {run.artifacts_dir}`):\n  "
            f"{train_missing_command(run, stage1, missing)}\n"
            f"or pass --allow-partial to {command} to go on with folds {present} on purpose (recorded in the "
            f"manifest and the report).")
    log.warning("Stage 1 of run %r has folds %s of %d; fold(s) %s missing: going on with --allow-partial.",
                run.run, present, n_folds, missing)
    return {"folds": present, "missing": missing, "n_folds": n_folds}
