"""Reading the competition layout and validating it before any work starts.

`data_dir/train.csv` (Id, optional 12 metadata flags, Pawpularity 1..100), `data_dir/train/<Id>.jpg`,
`data_dir/test.csv` (Id, optional flags), `data_dir/test/<Id>.jpg`. Every problem found is reported at
once, each with the file, the CSV line and the fix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

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


def _line(row_index: int) -> int:
    """CSV line number of a data row (line 1 is the header)."""
    return row_index + 2


def _problems_in_numeric(frame: pd.DataFrame, col: str, lo: float, hi: float, csv: Path) -> list[str]:
    values = pd.to_numeric(frame[col], errors="coerce")
    problems = []
    for i in np.flatnonzero(values.isna().to_numpy()):
        problems.append(f"{csv} line {_line(i)} (Id {frame[ID_COL].iat[i]}): {col}={frame[col].iat[i]!r} is "
                        f"not a number; give a value in {lo:g}..{hi:g} or remove the row.")
    for i in np.flatnonzero(((values < lo) | (values > hi)).to_numpy()):
        problems.append(f"{csv} line {_line(i)} (Id {frame[ID_COL].iat[i]}): {col}={values.iat[i]:g} is out "
                        f"of range; valid values are {lo:g}..{hi:g}.")
    return problems


def read_split(data_dir: str | Path, split: str, require_meta: bool = False) -> Split:
    """Read and validate `<split>.csv` and check every row has its image file.

    Raises DataError listing every problem found (not just the first).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    csv = data_dir / f"{split}.csv"
    if not csv.is_file():
        raise DataError(f"{csv} not found. --data-dir must hold the competition layout: "
                        f"train.csv, train/<Id>.jpg, test.csv, test/<Id>.jpg.")
    try:
        # utf-8-sig drops a BOM; pandas handles CRLF. Ids stay strings (hex Ids like '1e10' are not numbers).
        frame = pd.read_csv(csv, dtype={ID_COL: str}, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{csv} could not be read as CSV ({e}). Save it as comma-separated UTF-8 "
                        f"with a header row.") from None
    frame.columns = [str(c).strip() for c in frame.columns]

    required = [ID_COL] + ([TARGET_COL] if split == "train" else []) + (META_COLS if require_meta else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        hint = " (or run without --use-meta)" if set(missing) & set(META_COLS) else ""
        raise DataError(f"{csv}: missing column(s) {missing}; found {list(frame.columns)}. "
                        f"Rename or add them{hint}.")
    if frame.empty:
        raise DataError(f"{csv} has a header but no rows; it needs at least one image row.")

    problems: list[str] = []
    ids = frame[ID_COL]
    for i in np.flatnonzero(ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()):
        problems.append(f"{csv} line {_line(i)}: empty Id; every row needs the image's file name stem.")
    frame[ID_COL] = ids.astype(str).str.strip()
    dup = frame[ID_COL].duplicated(keep="first").to_numpy()
    for i in np.flatnonzero(dup):
        first = int(np.flatnonzero((frame[ID_COL] == frame[ID_COL].iat[i]).to_numpy())[0])
        problems.append(f"{csv} line {_line(i)}: duplicate Id {frame[ID_COL].iat[i]!r} (first on line "
                        f"{_line(first)}); keep one row per image.")
    if split == "train":
        problems += _problems_in_numeric(frame, TARGET_COL, 1, 100, csv)
    meta_present = [c for c in META_COLS if c in frame.columns]
    for col in meta_present:
        problems += _problems_in_numeric(frame, col, 0, 1, csv)

    image_dir = data_dir / split
    paths = [image_dir / f"{i}.jpg" for i in frame[ID_COL]]
    for i, path in enumerate(paths):
        if not path.is_file():
            problems.append(f"{csv} line {_line(i)}: image {path} not found; add the file or remove the row.")
    if problems:
        raise DataError(_summarise(problems, csv))

    if split == "train":
        frame[TARGET_COL] = pd.to_numeric(frame[TARGET_COL]).astype(np.float32)
    for col in meta_present:
        frame[col] = pd.to_numeric(frame[col]).astype(np.float32)
    _warn_orphans(image_dir, set(frame[ID_COL]))
    return Split(split, frame.reset_index(drop=True), paths)


def _summarise(problems: list[str], csv: Path, limit: int = 30) -> str:
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s) in {csv} and its images:\n  {shown}{more}"


def _warn_orphans(image_dir: Path, ids: set[str]) -> None:
    if not image_dir.is_dir():
        return
    orphans = [p.name for p in image_dir.glob("*.jpg") if p.stem not in ids]
    if orphans:
        log.warning("%d image(s) in %s have no row in the CSV and are ignored (e.g. %s).",
                    len(orphans), image_dir, orphans[0])
