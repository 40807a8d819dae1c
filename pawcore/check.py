"""The data check run by `check-data` and, before any work, by every stage that reads images.

CSV problems and undecodable images are gathered together, so a user fixes everything in one pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import SPLITS, Split, scan_split, summarise
from .errors import DataError
from .images import cached_images, decode_problems


def check_data(data_dir: str | Path, splits: tuple[str, ...] = SPLITS, require_meta: bool = False) -> list[str]:
    """Every problem in the given splits' CSVs and image files (empty list: the data is fine)."""
    problems: list[str] = []
    for split in splits:
        _, paths, found = scan_split(data_dir, split, require_meta)
        problems += found + decode_problems([p for p in paths if p.is_file()])
    return problems


def load_split(data_dir: str | Path, split: str, size: int, cache_dir: str | Path,
               require_meta: bool = False) -> tuple[Split, np.ndarray]:
    """A validated split and its decoded pixels, (N, size, size, 3) uint8 from the shared cache.

    Images are decoded once, into the cache; a decode failure is reported with the CSV's problems.
    """
    frame, paths, problems = scan_split(data_dir, split, require_meta)
    if problems:
        problems += decode_problems([p for p in paths if p.is_file()])
        raise DataError(summarise(problems, f"{Path(data_dir) / split}.csv and its images"), problems)
    return Split(split, frame, paths), cached_images(paths, size, cache_dir, split)
