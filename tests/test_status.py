"""`status` only reads (no manifest re-assembled, no file touched) and lists every run."""
from __future__ import annotations

import shutil

from pipeline import main


def snapshot(root):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_status_reads_only_and_points_at_unlisted_folds(run_copy, capsys):
    (run_copy / "default/stage1/manifest.json").unlink()
    shutil.copytree(run_copy / "default", run_copy / "other")
    before = snapshot(run_copy)
    assert main(["status", "--artifacts-dir", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert snapshot(run_copy) == before, "status wrote or touched files"
    assert "run 'default'" in out and "run 'other'" in out          # every run without --run
    assert "manifest: none yet" in out and "folds [0, 1] are done but not in the manifest" in out
    assert main(["status", "--artifacts-dir", str(run_copy), "--run", "other"]) == 0
    assert "run 'default'" not in capsys.readouterr().out


def test_status_without_runs_says_how_to_start(tmp_path, capsys):
    assert main(["status", "--artifacts-dir", str(tmp_path)]) == 2
    assert "No runs in" in capsys.readouterr().err
