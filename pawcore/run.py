"""The artifacts directory of one run, and the manifests through which stages talk to each other.

    artifacts/<run>/folds.csv
    artifacts/<run>/stage1/fold{k}/...   stage1/oof_nn.csv   stage1/manifest.json
    artifacts/<run>/stage2/fold{k}/...   stage2/oof_svr.csv  stage2/manifest.json
    artifacts/<run>/submission.csv, report.md, *.png
    artifacts/cache/                     decoded images, shared by runs

A manifest is written last (atomically), lists every fold's files with their SHA-256, and is checked by
the next stage before it does any work.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import read_json, sha256_file, write_json
from .errors import ArtifactError

MANIFEST_VERSION = 1
STAGE_COMMANDS = {"stage1": "train-backbone", "stage2": "fit-svr"}


@dataclass(frozen=True)
class RunDir:
    artifacts_dir: Path
    run: str

    @property
    def root(self) -> Path:
        return self.artifacts_dir / self.run

    @property
    def folds_csv(self) -> Path:
        return self.root / "folds.csv"

    @property
    def image_cache(self) -> Path:
        return self.artifacts_dir / "cache"

    def stage(self, name: str) -> Path:
        return self.root / name

    def fold_dir(self, stage: str, fold: int) -> Path:
        return self.root / stage / f"fold{fold}"

    def manifest_path(self, stage: str) -> Path:
        return self.root / stage / "manifest.json"


def run_dir(artifacts_dir: str | Path, run: str) -> RunDir:
    return RunDir(Path(artifacts_dir), run)


def write_manifest(run: RunDir, stage: str, payload: dict[str, Any]) -> Path:
    path = run.manifest_path(stage)
    write_json(path, {"stage": stage, "version": MANIFEST_VERSION,
                      "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **payload})
    return path


def load_manifest(run: RunDir, stage: str) -> dict[str, Any]:
    """Load a stage's manifest and check that every file it lists is present and unchanged."""
    path = run.manifest_path(stage)
    cmd = f"`python pipeline.py {STAGE_COMMANDS[stage]} --run {run.run} --artifacts-dir {run.artifacts_dir}`"
    if not path.is_file():
        raise ArtifactError(f"{path} not found: {stage} has not finished for run {run.run!r}. First run {cmd}.")
    manifest = read_json(path)
    if manifest.get("version") != MANIFEST_VERSION:
        raise ArtifactError(f"{path} has manifest version {manifest.get('version')}, this code reads "
                            f"{MANIFEST_VERSION}. Re-create it: run {cmd}.")
    for fold, entry in manifest["folds"].items():
        for rel, digest in entry["files"].items():
            file = path.parent / rel
            if not file.is_file():
                raise ArtifactError(f"{file} (fold {fold}) is listed in {path} but missing. Run {cmd}.")
            if sha256_file(file) != digest:
                raise ArtifactError(f"{file} (fold {fold}) changed since {path} was written (SHA-256 differs). "
                                    f"Run {cmd}.")
    return manifest


def manifest_digest(run: RunDir, stage: str) -> str:
    return sha256_file(run.manifest_path(stage))


def file_digests(base: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to the stage dir: sha256} for a manifest entry."""
    return {str(f.relative_to(base)): sha256_file(f) for f in files}
