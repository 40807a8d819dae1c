"""`check-data`: every problem of a dataset's CSVs and image files, listed together.

The stages run the same checks through `pawcore.data.read_split` before any work.
"""
from __future__ import annotations

from pathlib import Path

from .data import SPLITS, scan_split
from .images import decode_problems


def check_data(data_dir: str | Path, splits: tuple[str, ...] = SPLITS, require_meta: bool = False) -> list[str]:
    """Every problem in the given splits' CSVs and image files (empty list: the data is fine)."""
    problems: list[str] = []
    for split in splits:
        _, paths, found = scan_split(data_dir, split, require_meta)
        problems += found + decode_problems([p for p in paths if p.is_file()])
    return problems
