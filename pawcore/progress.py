"""Progress bars on every loop a person waits on; silent when stderr is not a terminal (CI, logs)."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def interactive() -> bool:
    return sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    return tqdm(items, desc=desc, total=total, disable=not interactive(), leave=False, dynamic_ncols=True)
