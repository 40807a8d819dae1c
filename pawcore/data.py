"""Reading the competition layout and validating it before any work starts.

`data_dir/train.csv` (Id, optional 12 metadata flags, Pawpularity 1..100), `data_dir/train/<Id>.jpg`,
`data_dir/test.csv` (Id, optional flags), `data_dir/test/<Id>.jpg`. Every problem found is reported at
once, each with the file, the CSV line and the fix.
"""
from __future__ import annotations

import csv as csv_module
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, summarise
from .images import cached_images, decode_problems

log = logging.getLogger(__name__)

ID_COL = "Id"
TARGET_COL = "Pawpularity"
META_COLS = [
    "Subject Focus", "Eyes", "Face", "Near", "Action", "Accessory",
    "Group", "Collage", "Human", "Occlusion", "Info", "Blur",
]
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Split:
    """One validated split: its rows (in CSV order) and the image path of each row."""

    name: str
    frame: pd.DataFrame
    image_paths: list[Path]

    @property
    def ids(self) -> list[str]:
        return self.frame[ID_COL].tolist()

    @property
    def has_meta(self) -> bool:
        return all(c in self.frame.columns for c in META_COLS)

    def meta(self) -> np.ndarray:
        return self.frame[META_COLS].to_numpy(np.float32)

    def targets(self) -> np.ndarray:
        return self.frame[TARGET_COL].to_numpy(np.float32)

    def pixels(self, size: int, cache_dir: str | Path, resize: str = "squash") -> np.ndarray:
        """(N, size, size, 3) uint8 RGB, decoded once into the shared memory-mapped cache."""
        return cached_images(self.image_paths, size, cache_dir, self.name, resize=resize)


def _line(row_index: int) -> int:
    """CSV line number of a data row (line 1 is the header)."""
    return row_index + 2


# A problem found in one data row: (row index, message). The row index orders the report by file line,
# whatever check found the problem; the message is what the user reads.
RowProblem = tuple[int, str]


def _problems_in_numeric(frame: pd.DataFrame, col: str, lo: float, hi: float, csv: Path) -> list[RowProblem]:
    values = pd.to_numeric(frame[col], errors="coerce")
    found = []
    for i in np.flatnonzero(values.isna().to_numpy()):
        found.append((i, f"{csv} line {_line(i)} (Id {frame[ID_COL].iat[i]}): {col}={frame[col].iat[i]!r} is "
                         f"not a number; give a value in {lo:g}..{hi:g} or remove the row."))
    for i in np.flatnonzero(((values < lo) | (values > hi)).to_numpy()):
        found.append((i, f"{csv} line {_line(i)} (Id {frame[ID_COL].iat[i]}): {col}={values.iat[i]:g} is out "
                         f"of range; valid values are {lo:g}..{hi:g}."))
    return found


def _row_problems(frame: pd.DataFrame, split: str, csv: Path, paths: list[Path]) -> list[str]:
    """Every problem in the data rows (Ids, values, image files), in file order whatever check found it."""
    found: list[RowProblem] = []
    ids = frame[ID_COL]
    for i in np.flatnonzero((ids == "").to_numpy()):
        found.append((i, f"{csv} line {_line(i)}: empty Id; every row needs the image's file name stem."))
    for i in np.flatnonzero(ids.str.contains(r"[/\\\x00]|^\.\.?$", regex=True).to_numpy()):
        found.append((i, f"{csv} line {_line(i)}: Id {ids.iat[i]!r} is not a file name stem; "
                         f"use the image's name without folder or .jpg."))
    for i in np.flatnonzero(ids.duplicated(keep="first").to_numpy() & (ids != "").to_numpy()):
        first = int(np.flatnonzero((ids == ids.iat[i]).to_numpy())[0])
        found.append((i, f"{csv} line {_line(i)}: duplicate Id {ids.iat[i]!r} (first on line "
                         f"{_line(first)}); keep one row per image."))
    if split == "train":
        found += _problems_in_numeric(frame, TARGET_COL, 1, 100, csv)
    for col in [c for c in META_COLS if c in frame.columns]:
        found += _problems_in_numeric(frame, col, 0, 1, csv)
    for i, path in enumerate(paths):
        if ids.iat[i] and not path.is_file():
            found.append((i, f"{csv} line {_line(i)}: image {path} not found; add the file or remove the row."))
    found.sort(key=lambda problem: problem[0])  # stable: by row, then in the order of the checks above
    return [message for _, message in found]


def scan_split(data_dir: str | Path, split: str, require_meta: bool = False
               ) -> tuple[pd.DataFrame | None, list[Path], list[str]]:
    """Read `<split>.csv` and collect every problem in it and in its list of image files.

    Returns (frame, image paths, problems); frame is None when the CSV could not be read at all.
    Never raises for bad data: `read_split` and `check-data` decide what to do with the problems.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    csv = data_dir / f"{split}.csv"
    if not csv.is_file():
        return None, [], [f"{csv} not found. --data-dir must hold the competition layout: "
                          f"train.csv, train/<Id>.jpg, test.csv, test/<Id>.jpg."]
    try:
        # utf-8-sig drops a BOM; pandas handles CRLF. Ids stay strings (hex Ids like '1e10' are not numbers).
        frame = pd.read_csv(csv, dtype=str, encoding="utf-8-sig", skipinitialspace=True, keep_default_na=False,
                            na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, csv_module.Error) as e:
        return None, [], [f"{csv} could not be read as CSV ({type(e).__name__}: {str(e).strip()[:200]}). "
                          f"Save it as comma-separated UTF-8 with a header row."]
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated_cols = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated_cols:
        return None, [], [f"{csv}: column(s) {duplicated_cols} appear more than once; keep one of each."]

    required = [ID_COL] + ([TARGET_COL] if split == "train" else []) + (META_COLS if require_meta else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        hint = " (or run without --use-meta)" if set(missing) & set(META_COLS) else ""
        return None, [], [f"{csv}: missing column(s) {missing}; found {list(frame.columns)}. "
                          f"Rename or add them{hint}."]
    if frame.empty:
        return None, [], [f"{csv} has a header but no rows; it needs at least one image row."]
    extra = [c for c in frame.columns if c not in [ID_COL, TARGET_COL, *META_COLS]]
    if extra:
        log.warning("%s: ignoring column(s) %s (known: Id, Pawpularity and the 12 metadata flags).", csv, extra)

    frame[ID_COL] = frame[ID_COL].fillna("").str.strip()
    image_dir = data_dir / split
    paths = [image_dir / f"{i}.jpg" for i in frame[ID_COL]]
    problems = _row_problems(frame, split, csv, paths)
    if not problems:
        for col in [TARGET_COL, *META_COLS]:
            if col in frame.columns:
                frame[col] = pd.to_numeric(frame[col]).astype(np.float32)
        _warn_orphans(image_dir, set(frame[ID_COL]))
    return frame.reset_index(drop=True), paths, problems


def read_split(data_dir: str | Path, split: str, require_meta: bool = False) -> Split:
    """Read and validate `<split>.csv` and check every row has its image file: the one loader of every stage.

    Raises DataError listing every problem found, not just the first: with CSV problems, the images that
    do not decode are listed too, so a user fixes everything in one pass. (Without them, the images are
    decoded once, into the cache, by `Split.pixels`, which reports undecodable ones the same way.)
    """
    frame, paths, problems = scan_split(data_dir, split, require_meta)
    if problems:
        problems += decode_problems([p for p in paths if p.is_file()])
        raise DataError(summarise(problems, f"{Path(data_dir) / split}.csv and its images"), problems)
    return Split(split, frame, paths)


def _warn_orphans(image_dir: Path, ids: set[str]) -> None:
    if not image_dir.is_dir():
        return
    orphans = [p.name for p in image_dir.glob("*.jpg") if p.stem not in ids]
    if orphans:
        log.warning("%d image(s) in %s have no row in the CSV and are ignored (e.g. %s).",
                    len(orphans), image_dir, orphans[0])
