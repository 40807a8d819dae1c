"""Lock files, so two runs never write the same outputs at once.

`fcntl.flock` locks vanish with their process, so a killed run never leaves a stale lock behind.
Locks are per fold (parallel jobs may train different folds of one run on a shared filesystem) and
per stage for the stage-wide writes.

Some cluster filesystems (Lustre, NFS mounted without lock support) refuse `flock` with ENOSYS,
EOPNOTSUPP or ENOLCK. There the lock falls back to a sibling `<lock>.held` file created with O_EXCL
(atomic on those filesystems too) holding pid, host and time. Such a file outlives a killed process:
if no run of yours is alive, delete it (the error names it).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from .errors import PipelineError

log = logging.getLogger(__name__)

# flock errors that mean "this filesystem does not do locks", not "someone holds it".
NO_LOCK_SUPPORT = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}


class LockedError(PipelineError):
    """Another process holds the lock."""


def _holder_text() -> str:
    return (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{dt.datetime.now().isoformat(timespec='seconds')}")


def _locked_error(what: str, holder: str, path: Path, extra: str = "") -> LockedError:
    return LockedError(f"{what} is being written by another run ({holder or 'unknown process'}; lock {path}). Wait "
                       f"for it to finish, pick other --folds, or use another --run.{extra}")


def held_file(path: Path) -> Path:
    """The O_EXCL lock file used where flock is not supported."""
    return path.with_name(path.name + ".held")


@contextlib.contextmanager
def _exclusive_file(path: Path, what: str, wait: bool) -> Iterator[None]:
    held = held_file(path)
    while True:
        try:
            fd = os.open(held, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            if wait:
                time.sleep(0.5)
                continue
            holder = held.read_text(errors="replace").strip() if held.is_file() else ""
            raise _locked_error(what, holder, held, f" If no such run is alive (it was killed), delete {held}.") from None
    try:
        os.write(fd, _holder_text().encode())
        os.close(fd)
        yield
    finally:
        held.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block; without `wait`, fail at once if it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _locked_error(what, os.pread(fd, 512, 0).decode(errors="replace").strip(), path) from None
        except OSError as e:
            if e.errno not in NO_LOCK_SUPPORT:
                raise
            log.warning("flock is not supported on %s (%s): using the lock file %s instead; if a run is killed, "
                        "delete that file before the next one.", path.parent, e.strerror, held_file(path))
            with _exclusive_file(path, what, wait):
                yield
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def is_locked(path: Path) -> bool:
    """Does a live process hold this lock right now? (Probes without waiting or writing.)"""
    if held_file(path).is_file():
        return True
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError as e:
        if e.errno in NO_LOCK_SUPPORT:
            return False
        raise
    finally:
        os.close(fd)
