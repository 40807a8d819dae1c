"""Kaggle offline inference: artifacts mounted read-only, infer writes only to --out (and its cache).

Run as a user who cannot write to the artifacts: as root (CI) the child drops to `nobody` with setpriv,
as anyone else the artifacts copy is chmod'ed read-only. Skips with a reason where neither works.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from inference.config import InferConfig
from inference.infer import infer

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def as_reader(cmd: list[str]) -> list[str]:
    """The command run by a user without write access to root-owned files."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot run infer as a user who cannot write")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + cmd


@pytest.fixture
def kaggle(tiny_run, tiny_data):
    """/tmp/kaggle-*/input/{artifacts,data} read-only for the reader; working/ writable by all."""
    base = Path(tempfile.mkdtemp(prefix="kaggle-"))
    art, data, working = base / "input/artifacts", base / "input/data", base / "working"
    shutil.copytree(tiny_run, art)
    shutil.copytree(tiny_data, data)
    working.mkdir()
    os.chmod(working, 0o777)
    for path in [base, base / "input", *art.rglob("*"), art, *data.rglob("*"), data]:
        mode = 0o755 if path.is_dir() else 0o644
        os.chmod(path, mode if os.geteuid() == 0 or path.is_relative_to(data) else mode & ~0o222)
    yield art, data, working
    for path in art.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.rmtree(base, ignore_errors=True)


def run_infer(art: Path, data: Path, working: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(working), "MPLCONFIGDIR": str(working / ".mpl")}
    cmd = as_reader([sys.executable, str(ROOT / "pipeline.py"), "infer", "--data-dir", str(data),
                     "--artifacts-dir", str(art), *extra])
    probe = subprocess.run(as_reader([sys.executable, "-c", "import pipeline"]), env=env, cwd=working,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot import the project from {ROOT}: {probe.stderr[-300:]}")
    return subprocess.run(cmd, env=env, cwd=working, capture_output=True, text=True, timeout=300)


def test_infer_from_read_only_artifacts_writes_nothing_there(kaggle, tiny_data, tmp_path):
    art, data, working = kaggle
    before = snapshot(art)
    out = run_infer(art, data, working, "--out", str(working / "submission.csv"), "--tta")
    assert out.returncode == 0, out.stderr[-3000:]
    assert snapshot(art) == before, "infer changed the read-only artifacts"
    assert (working / "cache").is_dir() and (working / "ensemble.json").is_file()
    got = pd.read_csv(working / "submission.csv", dtype={"Id": str})
    # The same submission as infer run with write access everywhere.
    writable = tmp_path / "art"
    shutil.copytree(art, writable)
    for path in writable.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    expected = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(writable), tta=True))
    assert got["Id"].tolist() == expected["Id"].tolist()
    assert got["Pawpularity"].to_numpy() == pytest.approx(expected["Pawpularity"].to_numpy(), abs=1e-6)


def test_infer_without_out_on_read_only_artifacts_says_what_to_pass(kaggle):
    art, data, working = kaggle
    before = snapshot(art)
    out = run_infer(art, data, working)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "read-only" in out.stderr and "--out" in out.stderr
    assert snapshot(art) == before
