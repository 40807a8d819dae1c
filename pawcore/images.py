"""Decode each photo once: RGB, EXIF-upright, squashed to size x size, cached as a uint8 .npy memmap.

Every stage (all folds, every epoch, embeddings, infer) reads the same cache, so a photo is decoded
once per (split, size). The cache file name carries a key made of the files' names, sizes and
modification times and the resize settings: change any and a new cache is built.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .artifacts import atomic_path, sha256_text
from .errors import DataError, summarise
from .progress import progress

log = logging.getLogger(__name__)

# What PIL and load_rgb raise for files that are not (whole) images; anything else is a bug.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
CACHE_VERSION = 1  # bump when decoding/resizing changes, so old caches are not reused
# How every cached image is resized (after JPEG draft decoding): recorded in each fold's config.json.
INTERPOLATION = "area"


def load_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode an image file as an upright RGB uint8 array, whatever its mode (L, RGBA, CMYK, 16-bit, P).

    With `size`, JPEGs are decoded at a reduced DCT scale no smaller than size x size (libjpeg's draft
    mode: much faster for big photos) and the result is resized to exactly size x size with INTER_AREA.

    PIL rather than cv2.imdecode(IMREAD_REDUCED_COLOR_*): both use the same libjpeg DCT scaling (cv2 was
    ~13% faster on one 804x904 photo here), but OpenCV decodes a truncated JPEG without an error, filling
    the rest with grey, which would let broken files into training; PIL raises.
    """
    with Image.open(path) as img:
        if size is not None and img.format == "JPEG":
            img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            # 16-bit and float greyscale: scale to 8 bits instead of clipping everything to white.
            arr = np.asarray(img, dtype=np.float32)
            arr = arr * (255.0 / max(float(arr.max()), 1.0))
            img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
        rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb if size is None else resize_square(rgb, size))


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The one resize of the project: squash to size x size with INTER_AREA (INTERPOLATION)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def images_key(pixels: np.memmap) -> str:
    """The identity of a cached image array (its file's name: split, size and source-file key)."""
    return Path(pixels.filename).stem


def cache_key(paths: Sequence[Path], size: int) -> str:
    parts = [f"v{CACHE_VERSION}", f"size={size}"]
    for p in paths:
        st = os.stat(p)
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text("\n".join(parts))[:16]


def _decode_each(paths: Sequence[Path], size: int, store, desc: str, workers: int | None) -> list[str]:
    """Decode every path in parallel (OpenCV/PIL release the GIL), calling store(i, rgb); return problems."""
    problems: list[str] = []

    def decode(i: int) -> None:
        try:
            store(i, load_rgb(paths[i], size))
        except DECODE_ERRORS as e:
            problems.append(f"{paths[i]}: cannot be decoded as an image ({type(e).__name__}: {e}); "
                            f"replace the file or remove its row.")

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in progress(pool.map(decode, range(len(paths))), desc=desc, total=len(paths)):
            pass
    return sorted(problems)


def decode_problems(paths: Sequence[Path], workers: int | None = None) -> list[str]:
    """Decode every file (at a small size: fast, and the same decoder path) and list those that fail."""
    return _decode_each(paths, 64, lambda i, rgb: None, "check images", workers)


def cached_images(paths: Sequence[Path], size: int, cache_dir: str | Path, name: str,
                  workers: int | None = None) -> np.ndarray:
    """Return an (N, size, size, 3) uint8 array of the images, building the cache file if needed.

    Every file is decoded before the cache is renamed into place; all files that fail are reported
    together and no cache file is left behind.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"images-{name}-{size}px-{cache_key(paths, size)}.npy"
    if path.is_file():
        log.info("Image cache hit: %s", path)
        return np.load(path, mmap_mode="r")

    log.info("Decoding %d images to %dx%d into %s", len(paths), size, size, path)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        problems = _decode_each(paths, size, out.__setitem__, f"decode {name}", workers)
        out.flush()
        del out
        if problems:
            raise DataError(summarise(problems, f"the {name} images"), problems)
    return np.load(path, mmap_mode="r")


class ImageSet(Protocol):
    """Images a model can read at any square size: pixels(size) is (N, size, size, 3) uint8, RGB, upright.

    fit-svr, infer and score/serve all hand images to the models through this protocol, at whatever
    size each model needs. A set whose pixels are a cache memmap has a stable identity (`images_key`),
    so features computed from it can be cached; pixels held in memory are computed afresh.
    """

    def __len__(self) -> int: ...

    def pixels(self, size: int) -> np.ndarray: ...


class SplitImages:
    """The photos of a data split, decoded once per size into the memory-mapped image cache."""

    def __init__(self, paths: Sequence[Path], cache_dir: Path, name: str):
        self.paths, self.cache_dir, self.name = list(paths), Path(cache_dir), name

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, size: int) -> np.ndarray:
        return cached_images(self.paths, size, self.cache_dir, self.name)


class ArrayImages:
    """RGB photos already in memory (any sizes), squashed to size x size as the image cache does."""

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, size: int) -> np.ndarray:
        out = np.empty((len(self.images), size, size, 3), np.uint8)
        for i, rgb in enumerate(self.images):
            out[i] = resize_square(rgb, size)
        return out
