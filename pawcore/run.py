"""The artifacts directory of one run.

    artifacts/<run>/folds.csv
    artifacts/<run>/stage1/...           written by train-backbone, described by stage1_backbone/manifest.py
    artifacts/<run>/stage2/...           written by fit-svr, described by stage2_svr/manifest.py
    artifacts/<run>/submission.csv, report.md, *.png
    artifacts/cache/                     decoded images, shared by runs
    artifacts/features/                  features of the images, shared by runs (stage2_svr/bank.py)

Each stage's manifest (pawcore/manifest.py) is written last, lists every fold's files with their
SHA-256, and is checked by the next stage before it does any work.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

    @property
    def submission_csv(self) -> Path:
        """Where infer writes this run's submission (and report.md, ensemble.json) unless --out says otherwise."""
        return self.root / "submission.csv"

    @property
    def feature_cache(self) -> Path:
        return self.artifacts_dir / "features"


def run_dir(artifacts_dir: str | Path, run: str) -> RunDir:
    return RunDir(Path(artifacts_dir), run)
