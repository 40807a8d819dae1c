"""Crashes and restarts: a killed training resumes to the same result; finished folds are skipped; locks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pawcore.errors import PipelineError
from pawcore.locks import exclusive
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from workflows.synthetic import make_dataset

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# Several steps per epoch, so that resuming must restore the optimizer and schedule, small enough for CI.
# On the CPU: exact resume is a promise of the CPU path (GPU kernels such as cuDNN's autotuned ones are not
# bitwise deterministic, so on a GPU a resumed run lands near, not on, an uninterrupted one).
SLOW = {**TINY, "img_size": 64, "batch_size": 4, "epochs": 4, "n_folds": 2, "patience": 10, "accelerator": "cpu"}


def cli_args(data: Path, art: Path) -> list[str]:
    args = ["train-backbone", "--data-dir", str(data), "--artifacts-dir", str(art), "--folds", "0"]
    for key, value in SLOW.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


# train-backbone with one test hook: at the start of epoch 1 (epoch 0's last.ckpt already written), touch
# the marker file and wait to be killed.
KILLABLE_CHILD = """
import pathlib, sys, time
sys.path.insert(0, {root!r})
from stage1_backbone.lit import EpochSummary
started = EpochSummary.on_train_epoch_start
def signal_then_wait(self, trainer, pl_module):
    started(self, trainer, pl_module)
    if trainer.current_epoch == 1:
        pathlib.Path({marker!r}).touch()
        time.sleep(600)
EpochSummary.on_train_epoch_start = signal_then_wait
from pipeline import main
sys.exit(main({args!r}))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("resume"), n_train=80, n_test=4, seed=5, min_side=60, max_side=90)


def test_killed_training_resumes_to_the_same_result(data, tmp_path):
    reference = tmp_path / "ref"
    train_backbone(TrainConfig(data_dir=str(data), artifacts_dir=str(reference), **SLOW, folds="0"))

    art = tmp_path / "killed"
    # The child says when epoch 0's checkpoint is complete (at the start of epoch 1) and then waits to be
    # killed: the kill lands there on any machine, however fast or loaded (no sleeps, no race).
    marker = tmp_path / "epoch1-started"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_CHILD.format(root=str(ROOT), marker=str(marker),
                                                                         args=cli_args(data, art))],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and proc.poll() is None, "the child never reached epoch 1"
    assert (art / "default/stage1/fold0/checkpoints/last.ckpt").is_file()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fold = art / "default/stage1/fold0"
    assert not (fold / "done.json").exists() and not (art / "default/stage1/manifest.json").exists()
    assert not (fold / "model.safetensors").exists(), "a killed run leaves nothing that looks finished"

    train_backbone(TrainConfig(data_dir=str(data), artifacts_dir=str(art), **SLOW, folds="0"))
    a = pd.read_csv(reference / "default/stage1/oof_nn.csv")
    b = pd.read_csv(art / "default/stage1/oof_nn.csv")
    pd.testing.assert_frame_equal(a, b, atol=1e-4, check_exact=False)
    epochs = pd.read_csv(fold / "logs/metrics.csv").dropna(subset=["val_rmse"])
    assert sorted(epochs["epoch"].unique()) == list(range(SLOW["epochs"]))


def test_finished_folds_are_skipped(data, tmp_path, caplog):
    cfg = TrainConfig(data_dir=str(data), artifacts_dir=str(tmp_path), **{**TINY, "epochs": 1}, folds="0")
    train_backbone(cfg)
    weights = tmp_path / "default/stage1/fold0/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    caplog.set_level("INFO")
    train_backbone(cfg)
    assert weights.stat().st_mtime_ns == stamp
    assert "already finished with these settings, skipped" in caplog.text
    train_backbone(TrainConfig(**{**cfg.__dict__, "lr": 1e-3}))   # other settings: trained again
    assert weights.stat().st_mtime_ns != stamp


def test_second_writer_of_a_fold_stops_with_a_clear_message(data, tmp_path):
    lock = tmp_path / "default/stage1/fold0/.lock"
    with exclusive(lock, "stage1 fold 0"):
        # Another process (a subprocess, so flock really conflicts) asks for the same fold.
        out = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), *cli_args(data, tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "stage1 fold 0 of run 'default' is being written by another run (pid" in out.stderr
    assert "pick other --folds, or use another --run" in out.stderr


def test_lock_is_released_when_its_holder_dies(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from pawcore.locks import exclusive\n"
        "with exclusive(__import__('pathlib').Path(%r), 'x'):\n"
        "    print('held', flush=True); time.sleep(60)") % (str(ROOT), str(lock))],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(PipelineError, match="being written by another run"):
        with exclusive(lock, "x"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with exclusive(lock, "x"):   # no stale lock after a kill
        pass


def test_is_locked_sees_a_live_holder(tmp_path):
    from pawcore.locks import is_locked

    lock = tmp_path / "y.lock"
    assert not is_locked(lock)
    with exclusive(lock, "y"):
        assert is_locked(lock)
    assert not is_locked(lock)
