"""Writing artifacts safely (temp file + os.replace) and fingerprinting them (SHA-256)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    A crash never leaves a half-written file under the final name, so a later stage cannot
    mistake it for a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the final file the mode a plain open() would, so teammates on a
        # shared filesystem can read each other's submissions, reports and weights.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def current_umask() -> int:
    """The process umask (reading it means setting it; put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_pickle_verified(path: str | os.PathLike, expected_sha256: str):
    """joblib-load a pickle only if its bytes match the SHA-256 its manifest recorded.

    The bytes are hashed and unpickled from the same read, so the file cannot change in between.
    A pickle runs code when loaded: never load one whose hash you did not record yourself.
    """
    import io

    import joblib

    from .errors import ArtifactError

    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactError(f"Refusing to load {path}: its SHA-256 {actual[:12]}... differs from the "
                            f"{expected_sha256[:12]}... recorded in the manifest, so it is not the file this "
                            f"pipeline wrote (pickles run code when loaded). Re-create it with fit-svr.")
    return joblib.load(io.BytesIO(data))
