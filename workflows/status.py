"""`pipeline.py status`: which folds of each stage are done, being trained, or missing.

When folds run as independent jobs (several machines, one shared run directory), each job assembles
the stage-1 manifest from every finished fold when it ends. `status` does the same assembly on
demand, so the manifest is complete even if the jobs finished in an unlucky order.
"""
from __future__ import annotations


from pawcore.artifacts import read_json
from pawcore.check import load_split
from pawcore.config import config_from_dict
from pawcore.data import ID_COL
from pawcore.errors import ArtifactError
from pawcore.folds import read_folds
from pawcore.locks import is_locked
from pawcore.metrics import fold_baselines, format_table
from pawcore.run import RunDir, manifest_digest, run_dir
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import STAGE, assemble_stage


def fold_states(run: RunDir, n_folds: int) -> dict[str, list[int]]:
    states: dict[str, list[int]] = {"done": [], "training now": [], "interrupted": [], "not started": []}
    for k in range(n_folds):
        fold = run.fold_dir(STAGE, k)
        if (fold / "done.json").is_file():
            states["done"].append(k)
        elif is_locked(fold / ".lock"):
            states["training now"].append(k)
        elif (fold / "checkpoints" / "last.ckpt").is_file():
            states["interrupted"].append(k)
        else:
            states["not started"].append(k)
    return states


def status(artifacts_dir: str, run_name: str) -> str:
    run = run_dir(artifacts_dir, run_name)
    folds = read_folds(run.folds_csv)
    n_folds = int(folds["fold"].max()) + 1
    states = fold_states(run, n_folds)
    lines = [f"run {run_name!r} in {run.root}", "stage1 (train-backbone): " + "; ".join(
        f"{name} {ks}" for name, ks in states.items() if ks)]
    manifest_path = run.manifest_path(STAGE)
    listed = sorted(int(k) for k in read_json(manifest_path)["folds"]) if manifest_path.is_file() else []
    if states["done"] and listed != states["done"]:
        done = read_json(run.fold_dir(STAGE, states["done"][0]) / "done.json")
        cfg = config_from_dict(TrainConfig, done["train"], source="done.json")
        train, _ = load_split(cfg.data_dir, "train", cfg.img_size, run.image_cache, cfg.use_meta)
        fold_of = folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy()
        table = assemble_stage(run, cfg, fold_baselines(train.targets(), fold_of))
        listed = sorted(int(k) for k in read_json(manifest_path)["folds"])
        lines.append(f"  manifest re-assembled with folds {listed}:\n" + format_table(table))
    else:
        lines.append(f"  manifest: folds {listed}" if listed else "  manifest: none yet")
    stage2 = run.manifest_path("stage2")
    if stage2.is_file():
        manifest = read_json(stage2)
        current = manifest_path.is_file() and manifest["stage1_manifest_sha256"] == manifest_digest(run, STAGE)
        lines.append(f"stage2 (fit-svr): folds {sorted(int(k) for k in manifest['folds'])}, "
                     + ("built on the current stage 1" if current else "STALE: stage 1 changed since; re-run fit-svr"))
    else:
        lines.append("stage2 (fit-svr): not run")
    sub = run.root / "submission.csv"
    lines.append(f"submission: {sub}" if sub.is_file() else "submission: none (run infer)")
    return "\n".join(lines)


def print_status(artifacts_dir: str, run_name: str) -> None:
    if not run_dir(artifacts_dir, run_name).folds_csv.is_file():
        raise ArtifactError(f"No run {run_name!r} in {artifacts_dir} (no folds.csv). Start it with "
                            f"`python pipeline.py train-backbone --run {run_name} --data-dir D`.")
    print(status(artifacts_dir, run_name))
