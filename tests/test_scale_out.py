"""Scale-out on CPU: DDP with 2 processes (gloo), and folds as independent jobs sharing one run directory."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pawcore.run import run_dir
from stage1_backbone.manifest import Stage1Manifest
from pipeline import main

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def train_cmd(data: Path, art: Path, *extra: str) -> list[str]:
    args = [sys.executable, str(ROOT / "pipeline.py"), "train-backbone", "--data-dir", str(data),
            "--artifacts-dir", str(art)]
    for key, value in TINY.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + list(extra)


def assert_complete_stage1(art: Path, data: Path) -> pd.DataFrame:
    run = run_dir(art, "default")
    manifest = Stage1Manifest.load(run)   # every listed file present with its hash
    assert sorted(manifest.folds) == [0, 1] and manifest.complete
    oof = pd.read_csv(Stage1Manifest.oof_file(run), dtype={"Id": str})
    ids = pd.read_csv(data / "train.csv", dtype={"Id": str})["Id"]
    assert sorted(oof["Id"]) == sorted(ids), "every training image has exactly one OOF prediction"
    assert oof["pred"].between(0, 100).all() and oof["pred"].notna().all()
    assert not list(run.root.rglob("*.tmp")), "no half-written files"
    return oof


def test_ddp_two_processes_on_cpu(tiny_data, tmp_path):
    out = subprocess.run(train_cmd(tiny_data, tmp_path, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("Stage 1 OOF RMSE") == 1, "only rank 0 reports"
    oof = assert_complete_stage1(tmp_path, tiny_data)
    # The OOF file is computed by rank 0 over the whole validation fold: same meaning as on one device.
    folds = pd.read_csv(tmp_path / "default/folds.csv")["fold"]
    assert oof.groupby("fold").size().to_dict() == folds.value_counts().to_dict()
    # The LR schedule spans the steps each rank really runs (its half of the fold's training rows),
    # so the cosine ends at ~0, not at a fraction of the peak as when counted before sharding.
    for k in (0, 1):
        schedule = json.loads((tmp_path / f"default/stage1/fold{k}/done.json").read_text())["lr_schedule"]
        rows_per_rank = math.ceil(int((folds != k).sum()) / 2)
        steps_per_rank = math.ceil(rows_per_rank / TINY["batch_size"]) * TINY["epochs"]
        assert schedule["steps_run"] == steps_per_rank == schedule["total_steps"], schedule
        assert schedule["final_lr"] < 1e-3 * schedule["peak_lr"], schedule


def test_folds_as_independent_jobs(tiny_data, tmp_path, capsys):
    jobs = [subprocess.Popen(train_cmd(tiny_data, tmp_path, "--folds", k), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for k in ("1", "0")]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-3000:]
    assert_complete_stage1(tmp_path, tiny_data)
    assert main(["status", "--artifacts-dir", str(tmp_path)]) == 0
    assert "done [0, 1]" in capsys.readouterr().out
    assert main(["fit-svr", "--artifacts-dir", str(tmp_path), "--svr-backend", "sklearn"]) == 0


def test_assembling_with_no_matching_fold_is_a_clear_error(run_copy):
    import dataclasses

    from pawcore.errors import ArtifactError
    from pawcore.artifacts import read_json
    from stage1_backbone.config import TrainConfig
    from stage1_backbone.train import assemble_stage

    run = run_dir(run_copy, "default")
    trained = TrainConfig(**read_json(Stage1Manifest.done_file(run, 0))["train"])
    other = dataclasses.replace(trained, img_size=trained.img_size * 2)
    with pytest.raises(ArtifactError, match=r"No finished fold of run 'default'.*'img_size': 64"):
        assemble_stage(run, other, {"overall": 1.0})
    assert len(assemble_stage(run, trained, {"0": 1.0, "1": 1.0, "overall": 1.0})) == 3  # the matching ones do
