"""Trust: weights without pickle, pickles only with a matching SHA-256, one writer per stage."""
from __future__ import annotations

import json

import joblib
import pytest
from safetensors import safe_open

from pawcore.artifacts import load_pickle_verified, sha256_file
from pawcore.errors import ArtifactError, PipelineError
from pawcore.locks import exclusive
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr


def test_weights_are_safetensors(tiny_run):
    weights = tiny_run / "default/stage1/fold0/model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        assert "head.weight" in f.keys()


def test_pickle_loads_only_with_its_recorded_hash(tmp_path):
    path = tmp_path / "m.joblib"
    joblib.dump({"a": 1}, path)
    assert load_pickle_verified(path, sha256_file(path)) == {"a": 1}
    with pytest.raises(ArtifactError, match="Refusing to load .* differs from .* recorded in the manifest"):
        load_pickle_verified(path, "0" * 64)


def test_stage_manifest_records_every_pickle(tiny_run):
    """Every pickle under stage2/ is listed in the manifest with its hash, so none is ever loaded unchecked.
    Breaks if fit-svr writes a pickle it does not list (or leaves a stale one from an older layout)."""
    stage2 = tiny_run / "default/stage2"
    manifest = json.loads((stage2 / "manifest.json").read_text())
    listed = {rel: sha for entry in manifest["folds"].values() for rel, sha in entry["files"].items()}
    pickles = sorted(str(p.relative_to(stage2)) for p in stage2.rglob("*.joblib"))
    assert pickles and all(listed.get(rel) == sha256_file(stage2 / rel) for rel in pickles), (pickles, listed)


def test_second_fit_svr_on_the_same_run_stops(run_copy):
    with exclusive(run_copy / "default/stage2/.lock", "stage2"):
        # flock is per open file description: a second open in this process conflicts like another process.
        with pytest.raises(PipelineError, match="stage2 of run 'default' is being written by another run"):
            fit_svr(SVRConfig(artifacts_dir=str(run_copy), svr_backend="sklearn"))
