"""A stage's manifest: a typed record of what it wrote, read back through one checked loader.

Each stage declares its own manifest type beside the code that writes it (stage1_backbone/manifest.py,
stage2_svr/manifest.py): a frozen dataclass of the recorded fields plus the stage's file paths. This
module holds what they share: where the file lives, writing it last and atomically, and reading it back
with every failure (missing, not JSON, wrong shape, a listed file missing or changed) turned into an
ArtifactError that names the file and the command that re-creates it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .artifacts import artifact_error, read_json_object, sha256_file, write_json
from .errors import ArtifactError
from .run import RunDir

M = TypeVar("M", bound="Manifest")


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Base of the stage manifests. Subclasses set STAGE, COMMAND, VERSION and declare their fields.

    `folds` maps each fold to its files ({path relative to the stage dir: SHA-256}); `load` checks them.
    """

    STAGE: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    run: RunDir

    @classmethod
    def stage_dir(cls, run: RunDir) -> Path:
        return run.root / cls.STAGE

    @classmethod
    def fold_dir(cls, run: RunDir, fold: int) -> Path:
        return cls.stage_dir(run) / f"fold{fold}"

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return cls.stage_dir(run) / "manifest.json"

    @classmethod
    def remake(cls, run: RunDir) -> str:
        """The command that writes this manifest anew."""
        return f"`python pipeline.py {cls.COMMAND} --run {run.run} --artifacts-dir {run.artifacts_dir}`"

    def fold_files(self) -> dict[int, dict[str, str]]:
        """{fold: {relative path: SHA-256}} of every file the stage wrote per fold (`folds` maps each fold
        to a record with `files`)."""
        return {k: fold.files for k, fold in getattr(self, "folds").items()}

    def recorded_sha256(self, path: Path, fold: int) -> str:
        """The SHA-256 the manifest recorded for one of fold `fold`'s files (KeyError if not listed)."""
        return self.fold_files()[fold][str(path.relative_to(self.stage_dir(self.run)))]

    @property
    def folds_present(self) -> list[int]:
        return sorted(self.fold_files())

    def write(self) -> Path:
        """Write the manifest (atomically; a stage writes it last, after every file it lists)."""
        record = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "run"}
        path = self.path(self.run)
        write_json(path, {"stage": self.STAGE, "version": self.VERSION,
                          "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **record})
        return path

    @classmethod
    def read(cls: type[M], run: RunDir) -> M:
        """The manifest's record, its shape checked, without hashing the files it lists (cheap)."""
        path = cls.path(run)
        if not path.is_file():
            raise ArtifactError(f"{path} not found: {cls.STAGE} has not finished for run {run.run!r}. "
                                f"First run {cls.remake(run)}.")
        raw = read_json_object(path, cls.remake(run))
        if raw.get("version") != cls.VERSION:
            raise ArtifactError(f"{path} has manifest version {raw.get('version')}, this code reads {cls.VERSION}. "
                                f"Re-create it: run {cls.remake(run)}.")
        try:
            return cls.from_record(run, raw)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise artifact_error(path, f"is not a valid {cls.STAGE} manifest ({type(e).__name__}: {e})",
                                 cls.remake(run)) from None

    @classmethod
    def load(cls: type[M], run: RunDir) -> M:
        """`read`, then check that every listed file is present and unchanged (SHA-256)."""
        manifest = cls.read(run)
        stage_dir = cls.path(run).parent
        for fold, files in manifest.fold_files().items():
            for rel, digest in files.items():
                file = stage_dir / rel
                if not file.is_file():
                    raise ArtifactError(f"{file} (fold {fold}) is listed in {cls.path(run)} but missing. "
                                        f"Run {cls.remake(run)}.")
                if sha256_file(file) != digest:
                    raise ArtifactError(f"{file} (fold {fold}) changed since {cls.path(run)} was written "
                                        f"(SHA-256 differs). Run {cls.remake(run)}.")
        return manifest

    @classmethod
    def from_record(cls: type[M], run: RunDir, raw: dict[str, Any]) -> M:
        """Build from the JSON record; KeyError/TypeError/ValueError mean a damaged file."""
        raise NotImplementedError

    def digest(self) -> str:
        """SHA-256 of the manifest file: what a downstream stage records to notice a re-run."""
        return sha256_file(self.path(self.run))


def fold_file(name: str) -> classmethod:
    """A manifest class's path of a per-fold file: `weights_file = fold_file("model.safetensors")` gives
    `Stage1Manifest.weights_file(run, k)` -> <run>/stage1/fold{k}/model.safetensors."""
    return classmethod(lambda cls, run, fold: cls.fold_dir(run, fold) / name)


def stage_file(name: str) -> classmethod:
    """A manifest class's path of a file of the whole stage: `oof_file = stage_file("oof_nn.csv")`."""
    return classmethod(lambda cls, run: cls.stage_dir(run) / name)


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, mapping keys as strings (JSON's only key type)."""
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def files_of(entry: Any) -> dict[str, str]:
    """A fold entry's {relative path: SHA-256}, checked to be strings."""
    files = dict(entry["files"])
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise TypeError("a fold's files must map paths to SHA-256 strings")
    return files


def file_digests(base: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to the stage dir: SHA-256} for a fold's entry in a manifest."""
    return {str(f.relative_to(base)): sha256_file(f) for f in files}
