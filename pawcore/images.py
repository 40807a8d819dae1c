"""Decode each photo once: RGB, EXIF-upright, resized to size x size, cached as a uint8 .npy memmap.

Every stage (all folds, every epoch, embeddings, infer) reads the same cache, so a photo is decoded
once per (split, size, resize mode). The cache file name carries a key made of the files' names, sizes
and modification times and the resize settings: change any and a new cache is built.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Protocol, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .artifacts import atomic_path, sha256_text
from .errors import DataError, summarise
from .progress import progress
from .views import RESIZE_MODES

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when decoding/resizing changes, so old caches are not reused
# How every cached image is resized (after a full decode): recorded in each fold's config.json.
INTERPOLATION = "area"


# The only formats any command decodes (score, serve, the image cache, check-data): what phones, cameras and
# browsers produce for a photo. Pillow tries no other plugin, so an EPS sent as image/jpeg never reaches
# the EPS plugin (which runs Ghostscript) and a TIFF never reaches libtiff. Multi-picture JPEGs (MPO, from
# phones) open through the JPEG plugin. Left out on purpose: GIF (animations and clip art, 256 colours),
# BMP and TIFF (no phone or browser makes them; TIFF's decoder is large), HEIC/AVIF (no Pillow-maintained
# HEIC decoder; iPhones send JPEG when a photo is uploaded from a browser), and every other Pillow format.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
ACCEPTED_FORMATS = "JPEG, PNG or WebP"  # PHOTO_FORMATS as people write them, for messages
# What a file is, by its first bytes, to say so when it is refused (Pillow's own plugins are never asked).
_MAGIC = [(b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"), (b"GIF8", "GIF"),
          (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"),
          (b"8BPS", "Photoshop (PSD)"), (b"\x00\x00\x01\x00", "ICO")]
_FTYP = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
# What Pillow and load_rgb raise for a file that is not a (whole) photo; anything else is a bug.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class NotAPhotoError(UnidentifiedImageError):
    """Empty, or not one of PHOTO_FORMATS; the message says which, plainly (no file object in it)."""

    def __init__(self, message: str, empty: bool = False, kind: str | None = None):
        super().__init__(message)
        self.empty, self.kind = empty, kind  # kind: what the file is, when its first bytes say (e.g. "EPS")


def _head(source) -> bytes:
    if hasattr(source, "read"):
        source.seek(0)
        return source.read(16)
    with open(source, "rb") as f:
        return f.read(16)


def _not_a_photo(source) -> NotAPhotoError:
    head = _head(source)
    if not head:
        return NotAPhotoError("empty file (0 bytes)", empty=True)
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind is None and head[4:8] == b"ftyp":
        kind = _FTYP.get(head[8:12], "MP4/QuickTime")
    if kind:
        return NotAPhotoError(f"its format is {kind}, and the formats accepted are {ACCEPTED_FORMATS}", kind=kind)
    return NotAPhotoError(f"not a {ACCEPTED_FORMATS} file (the formats accepted)")


def open_image(source: str | Path | IO[bytes]) -> Image.Image:
    """Image.open restricted to PHOTO_FORMATS: the one place any command opens an image file.

    Anything else (or an empty file) raises NotAPhotoError with a message for the person who sent it.
    """
    try:
        return Image.open(source, formats=PHOTO_FORMATS)
    except UnidentifiedImageError:
        raise _not_a_photo(source) from None


def decode_reason(error: BaseException) -> str:
    """Why an image did not decode, in words for the person who has to fix the file."""
    if isinstance(error, NotAPhotoError):
        return str(error)
    if isinstance(error, Image.DecompressionBombError):  # over twice Image.MAX_IMAGE_PIXELS
        most = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        return f"more pixels than can be decoded safely ({most:.0f} megapixels at most)"
    return f"damaged or incomplete ({type(error).__name__}: {error})"


def load_rgb(path: str | Path | IO[bytes], size: int | None = None, resize: str = "squash") -> np.ndarray:
    """Decode an image file as an upright RGB uint8 array, whatever its mode (L, RGBA, CMYK, 16-bit, P).

    With `size`, the full-resolution decode is made exactly size x size by `resize_square` (`resize`:
    squash, pad or crop). Always the full decode (no JPEG draft mode, although it is faster for big
    photos): a crop of a photo, the photo itself and the occluded copies of the heatmap are then all cut
    from the same pixels, so the uncropped box scores exactly what the photo scores, at every model size.

    PIL rather than cv2.imdecode(IMREAD_REDUCED_COLOR_*): both use the same libjpeg DCT scaling (cv2 was
    ~13% faster on one 804x904 photo here), but OpenCV decodes a truncated JPEG without an error, filling
    the rest with grey, which would let broken files into training; PIL raises.

    Only PHOTO_FORMATS are opened: other files raise NotAPhotoError (see `decode_reason`).
    """
    with open_image(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16") or img.mode in ("I", "F"):
            # 16-bit and float greyscale: scale to 8 bits instead of clipping everything to white.
            arr = np.asarray(img, dtype=np.float32)
            arr = arr * (255.0 / max(float(arr.max()), 1.0))
            img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
        rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb if size is None else resize_square(rgb, size, resize))


def resize_square(rgb: np.ndarray, size: int, mode: str = "squash") -> np.ndarray:
    """The one resize of the project: a photo -> size x size, with INTER_AREA (INTERPOLATION).

    squash stretches the whole photo; pad keeps its aspect ratio and centres it on black; crop keeps
    the central square (pawcore/views.py). A square photo is the same in every mode.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}: use one of {list(RESIZE_MODES)}")
    h, w = rgb.shape[:2]
    if mode == "crop" and h != w:
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        rgb = rgb[y0:y0 + side, x0:x0 + side]
    if mode == "pad" and h != w:
        # Shrink (or grow) the longer side to `size` first, then pad: the pixels are resized once.
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        out = np.zeros((size, size, 3), np.uint8)
        y0, x0 = (size - new_h) // 2, (size - new_w) // 2
        out[y0:y0 + new_h, x0:x0 + new_w] = small
        return out
    if rgb.shape[:2] == (size, size):
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def images_key(pixels: np.memmap) -> str:
    """The identity of a cached image array (its file's name: split, size and source-file key)."""
    return Path(pixels.filename).stem


def cache_key(paths: Sequence[Path], size: int, resize: str = "squash") -> str:
    # squash adds nothing, so caches written before the other modes existed are still found.
    parts = [f"v{CACHE_VERSION}", f"size={size}"] + ([] if resize == "squash" else [f"resize={resize}"])
    for p in paths:
        st = os.stat(p)
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text("\n".join(parts))[:16]


def _decode_each(paths: Sequence[Path], size: int, store, desc: str, workers: int | None,
                 resize: str = "squash") -> list[str]:
    """Decode every path in parallel (OpenCV/PIL release the GIL), calling store(i, rgb); return problems."""
    problems: list[str] = []

    def decode(i: int) -> None:
        try:
            store(i, load_rgb(paths[i], size, resize))
        except DECODE_ERRORS as e:
            problems.append(f"{paths[i]}: cannot be decoded as an image: {decode_reason(e)}; "
                            f"replace the file or remove its row.")

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in progress(pool.map(decode, range(len(paths))), desc=desc, total=len(paths)):
            pass
    return sorted(problems)


def decode_problems(paths: Sequence[Path], workers: int | None = None) -> list[str]:
    """Decode every file (at a small size: fast, and the same decoder path) and list those that fail."""
    return _decode_each(paths, 64, lambda i, rgb: None, "check images", workers)


def cached_images(paths: Sequence[Path], size: int, cache_dir: str | Path, name: str,
                  workers: int | None = None, resize: str = "squash") -> np.ndarray:
    """Return an (N, size, size, 3) uint8 array of the images, building the cache file if needed.

    Every file is decoded before the cache is renamed into place; all files that fail are reported
    together and no cache file is left behind. `resize` (squash, pad, crop) is part of the file's name
    and key, so features cached from it (keyed by `images_key`) are per mode too.
    """
    cache_dir = Path(cache_dir)
    mode = "" if resize == "squash" else f"-{resize}"
    path = cache_dir / f"images-{name}-{size}px{mode}-{cache_key(paths, size, resize)}.npy"
    if path.is_file():
        log.info("Image cache hit: %s", path)
        return np.load(path, mmap_mode="r")

    log.info("Decoding %d images to %dx%d into %s", len(paths), size, size, path)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        problems = _decode_each(paths, size, out.__setitem__, f"decode {name}", workers, resize)
        out.flush()
        del out
        if problems:
            raise DataError(summarise(problems, f"the {name} images"), problems)
    return np.load(path, mmap_mode="r")


class ImageSet(Protocol):
    """Images a model can read at any square size: pixels(size, resize) is (N, size, size, 3) uint8, RGB,
    upright, made square by `resize_square` in mode `resize` (the run's, from its saved config).

    fit-svr, infer and score/serve all hand images to the models through this protocol, at whatever
    size each model needs. A set whose pixels are a cache memmap has a stable identity (`images_key`),
    so features computed from it can be cached; pixels held in memory are computed afresh.
    """

    def __len__(self) -> int: ...

    def pixels(self, size: int, resize: str = "squash") -> np.ndarray: ...


class SplitImages:
    """The photos of a data split, decoded once per size into the memory-mapped image cache."""

    def __init__(self, paths: Sequence[Path], cache_dir: Path, name: str):
        self.paths, self.cache_dir, self.name = list(paths), Path(cache_dir), name

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, size: int, resize: str = "squash") -> np.ndarray:
        return cached_images(self.paths, size, self.cache_dir, self.name, resize=resize)


class ArrayImages:
    """RGB photos already in memory (any sizes), made size x size as the image cache does."""

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, size: int, resize: str = "squash") -> np.ndarray:
        out = np.empty((len(self.images), size, size, 3), np.uint8)
        for i, rgb in enumerate(self.images):
            out[i] = resize_square(rgb, size, resize)
        return out
