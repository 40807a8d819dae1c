"""Lock files, so two runs never write the same outputs at once.

`fcntl.flock` locks vanish with their process, so a killed run never leaves a stale lock behind.
Locks are per fold (parallel jobs may train different folds of one run on a shared filesystem) and
per stage for the stage-wide writes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from .errors import PipelineError


class LockedError(PipelineError):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block; without `wait`, fail at once if it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown process"
            raise LockedError(f"{what} is being written by another run ({holder}; lock {path}). Wait for it to "
                              f"finish, pick other --folds, or use another --run.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{dt.datetime.now().isoformat(timespec='seconds')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def is_locked(path: Path) -> bool:
    """Does a live process hold this lock file right now? (Probes without waiting or writing.)"""
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
