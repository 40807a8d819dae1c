"""A damaged JSON artifact is a clear error naming the file and the command that rewrites
it (exit code 2, no traceback), never a raw JSONDecodeError / UnicodeDecodeError / TypeError / KeyError."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pawcore.errors import ArtifactError
from pipeline import main

REPO = Path(__file__).resolve().parents[1]
GOOD = {"artifacts_dir": "artifacts", "runs": ["demo"], "weights": {"demo:nn": 0.5, "demo:svr": 0.5}, "tta": False}

DAMAGE = {
    "cut short": b'{"runs": ["demo"',
    "not UTF-8": b'{"runs": ["d\xe9mo"]}',
    "a list": b'["demo"]',
    "empty": b"",
    "a key missing": json.dumps({k: v for k, v in GOOD.items() if k != "weights"}).encode(),
    "runs not a list": json.dumps({**GOOD, "runs": "demo"}).encode(),
    "weights not numbers": json.dumps({**GOOD, "weights": {"demo:nn": "half"}}).encode(),
    "weight of an unknown head": json.dumps({**GOOD, "weights": {"other:nn": 1.0}}).encode(),
    "tta not a boolean": json.dumps({**GOOD, "tta": "yes"}).encode(),
    "unknown key": json.dumps({**GOOD, "blend": 0.3}).encode(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_ensemble_json_is_exit_2_naming_file_and_command(tmp_path, capsys, damage):
    """`score --ensemble e.json` with e.json damaged raised a raw traceback that never named the file."""
    ensemble = tmp_path / "e.json"
    ensemble.write_bytes(DAMAGE[damage])
    # The photo is never read: ensemble.json is checked before anything else, so no run is needed either.
    code = main(["score", str(tmp_path / "x.jpg"), "--artifacts-dir", str(tmp_path), "--ensemble", str(ensemble)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(ensemble) in err and "pipeline.py infer" in err


def test_damaged_ensemble_json_prints_no_traceback(tmp_path):
    """End to end: a damaged ensemble.json given to score, as a user runs it."""
    ensemble = tmp_path / "e.json"
    ensemble.write_text('{"runs": ["demo"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "pipeline.py"), "score", "x.jpg", "--run", "demo",
                           "--artifacts-dir", str(tmp_path), "--ensemble", str(ensemble)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(ensemble) in proc.stderr and "not valid JSON" in proc.stderr


@pytest.mark.parametrize("content, problem", [
    (b'{"folds": {"0": ', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "JSON list"),
    (b'{"stage": "stage2"}', "'folds'"),
])
def test_read_json_object_names_file_problem_and_command(tmp_path, content, problem):
    """The shared loader that manifests use too: every failure is one ArtifactError."""
    from pawcore.artifacts import read_json_object  # here, so the other tests run (and fail) without it

    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    remake = "`python pipeline.py fit-svr --run demo`"
    with pytest.raises(ArtifactError) as err:
        read_json_object(path, remake, required=("stage", "folds"))
    assert str(path) in str(err.value) and problem in str(err.value) and remake in str(err.value)


def test_read_json_object_missing_or_unreadable(tmp_path):
    """a missing file or a directory in its place is an ArtifactError too, not FileNotFoundError."""
    from pawcore.artifacts import read_json_object

    for path, problem in ((tmp_path / "gone.json", "not found"), (tmp_path, "cannot be read")):
        with pytest.raises(ArtifactError, match=problem):
            read_json_object(path, "`python pipeline.py infer`")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "ok.json", "x", required=("a",)) == {"a": 1}


@pytest.mark.parametrize("stage, damage", [
    ("stage2", lambda text: text[:300]),                                    # cut short: not JSON
    ("stage2", lambda text: json.dumps({**json.loads(text), "folds": []})),  # the wrong shape
    ("stage1", lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "model"})),
])
def test_damaged_stage_manifest_is_exit_2_naming_file_and_command(run_copy, tiny_data, capsys, stage, damage):
    """A stage manifest cut short or of the wrong shape, then `infer`: before, a raw JSONDecodeError /
    AttributeError / KeyError; now exit 2 naming the manifest and the command that re-creates it."""
    manifest = run_copy / "default" / stage / "manifest.json"
    manifest.write_text(damage(manifest.read_text()))
    code = main(["infer", "--data-dir", str(tiny_data), "--artifacts-dir", str(run_copy), "--device", "cpu"])
    err = capsys.readouterr().err
    command = {"stage1": "train-backbone", "stage2": "fit-svr"}[stage]
    assert code == 2 and str(manifest) in err and f"python pipeline.py {command}" in err, err


def test_stage2_written_before_heads_were_one_pipeline_names_the_fix(run_copy, tiny_data, capsys):
    """A stage 2 from the earlier layout (manifest version 1: svr.joblib + scaler.joblib per fold) is refused
    by infer with the version and the fit-svr command, instead of failing on a missing head.joblib."""
    manifest = run_copy / "default/stage2/manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 1}))
    code = main(["infer", "--data-dir", str(tiny_data), "--artifacts-dir", str(run_copy), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "manifest version 1" in err and "python pipeline.py fit-svr" in err, err
