"""A cluster's shared filesystem: files follow the user's umask; locks work where flock does not."""
from __future__ import annotations

import errno
import fcntl
import os
import stat

import pytest

from pawcore import locks
from pawcore.artifacts import write_csv, write_json
from pawcore.locks import LockedError, exclusive, held_file, is_locked


@pytest.fixture
def umask():
    """Set a umask for one test, restoring the previous one after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    import pandas as pd
    write_csv(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
    assert _mode(tmp_path / "a.json") == expected and _mode(tmp_path / "b.csv") == expected


def test_a_whole_run_is_readable_by_teammates_under_umask_022(tiny_data, tmp_path, umask):
    from inference.config import InferConfig
    from inference.infer import infer

    from .conftest import TINY
    from stage1_backbone.config import TrainConfig
    from stage1_backbone.train import train_backbone
    from stage2_svr.config import SVRConfig
    from stage2_svr.fit import fit_svr

    umask(0o022)
    art = tmp_path / "art"
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=str(art), **{**TINY, "epochs": 1}))
    fit_svr(SVRConfig(artifacts_dir=str(art), svr_backend="sklearn"))
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(art)))
    files = [p for p in art.rglob("*") if p.is_file()]
    unreadable = [str(p.relative_to(art)) for p in files if not _mode(p) & stat.S_IROTH]
    for name in ("submission.csv", "report.md", "stage1/manifest.json", "stage1/fold0/model.safetensors",
                 "stage2/fold0/head.joblib"):
        assert (art / "default" / name).is_file(), name
    assert len(files) > 20 and unreadable == []


def _no_flock(*args, **kwargs):
    raise OSError(errno.ENOSYS, "Function not implemented")


def test_lock_falls_back_to_an_exclusive_file_where_flock_is_unsupported(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(locks.fcntl, "flock", _no_flock)
    lock = tmp_path / "fold0" / ".lock"
    with exclusive(lock, "stage1 fold 0"):
        assert held_file(lock).is_file() and f"pid {os.getpid()}" in held_file(lock).read_text()
        assert is_locked(lock)
        with pytest.raises(LockedError, match=rf"pid {os.getpid()}.*delete .*\.lock\.held"):
            with exclusive(lock, "stage1 fold 0"):
                pass
    assert "flock is not supported" in caplog.text
    assert not held_file(lock).exists() and not is_locked(lock)
    with exclusive(lock, "again"):  # released: can be taken again
        pass


def test_other_flock_errors_are_not_mistaken_for_missing_support(tmp_path, monkeypatch):
    def bad_fd(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(locks.fcntl, "flock", bad_fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        with exclusive(tmp_path / ".lock", "x"):
            pass
    assert not held_file(tmp_path / ".lock").exists()
    assert fcntl.flock is bad_fd
