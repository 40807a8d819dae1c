"""Writing artifacts safely (temp file + os.replace) and fingerprinting them (SHA-256)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


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


def read_json_object(path: str | os.PathLike, remake: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON object stored in `path`, which must hold every key in `required`.

    Any failure (missing or unreadable file, not UTF-8, not JSON, cut short, not an object, a key missing)
    is an ArtifactError naming the file, what is wrong and `remake`, the command that rewrites the file
    (e.g. "`python pipeline.py infer --run default`"): `pipeline.py` prints it without a traceback.
    Checking the values' types is the caller's job; `artifact_error` words those failures the same way.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise artifact_error(path, "not found", remake) from None
    except UnicodeDecodeError as e:
        raise artifact_error(path, f"is not UTF-8 text (byte {e.start}): the file is damaged", remake) from None
    except OSError as e:
        raise artifact_error(path, f"cannot be read ({e.strerror or e})", remake) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        cut = " (cut short?)" if e.pos >= len(text.rstrip()) else ""
        raise artifact_error(path, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}{cut}",
                             remake) from None
    if not isinstance(obj, dict):
        raise artifact_error(path, f"holds a JSON {_json_kind(obj)}, not the object (key: value) expected", remake)
    missing = [k for k in required if k not in obj]
    if missing:
        raise artifact_error(path, f"lacks the key(s) {', '.join(map(repr, missing))}", remake)
    return obj


def artifact_error(path: str | os.PathLike, problem: str, remake: str):
    """An ArtifactError worded 'PATH PROBLEM; re-create it: run REMAKE.' (for checks after read_json_object)."""
    from .errors import ArtifactError

    return ArtifactError(f"{path} {problem}; re-create it: run {remake}.")


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


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
