"""Photos from files or uploads, decoded exactly as the image cache decodes a data split.

`pawcore.images.load_rgb` is the one decoder: EXIF-upright, RGB whatever the mode, JPEG draft mode
at the model's size, INTER_AREA to a square. Calling it on the photo's bytes at each run's size gives
the same pixels as `infer`, so the same score. A photo that cannot be decoded becomes a `PhotoError`
holding a message for that photo alone; the others are still scored.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pawcore.images import DECODE_ERRORS, load_rgb

MAX_PIXELS = 50_000_000  # a larger photo is refused (memory), with a message saying so


@dataclass
class PhotoError:
    name: str
    error: str


@dataclass
class Photo:
    """One photo's bytes (read once) and its upright size, checked to decode."""

    name: str
    data: bytes
    width: int
    height: int

    def rgb(self, size: int | None = None) -> np.ndarray:
        """Upright RGB uint8: full size (None) or squashed to size x size as the image cache does."""
        return load_rgb(io.BytesIO(self.data), size)


class PhotoImages:
    """An `ImageSet` of photos: pixels(size) decodes each at the size the model asks for."""

    def __init__(self, photos: Sequence[Photo]):
        self.photos = list(photos)

    def __len__(self) -> int:
        return len(self.photos)

    def pixels(self, size: int) -> np.ndarray:
        return np.stack([p.rgb(size) for p in self.photos]) if self.photos else np.empty((0, size, size, 3), np.uint8)


def open_photo(name: str, data: bytes, max_pixels: int = MAX_PIXELS) -> Photo | PhotoError:
    """Check that `data` is a whole, decodable image of a sane size; a PhotoError says why not."""
    if not data:
        return PhotoError(name, "empty file (0 bytes): upload the photo again.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                return PhotoError(name, f"{img.width}x{img.height} pixels is more than the limit of "
                                        f"{max_pixels / 1e6:.0f} megapixels: resize the photo first.")
        # A full decode, not just the header: a truncated JPEG fails here, not halfway through scoring.
        h, w = load_rgb(io.BytesIO(data)).shape[:2]
    except DECODE_ERRORS as e:
        # PIL's message for an unknown format names an in-memory object: useless to the person reading it.
        why = "not an image format PIL knows" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
        return PhotoError(name, f"cannot be decoded as an image ({why}); send a JPEG, PNG or WebP photo.")
    return Photo(name, data, w, h)


def read_photos(paths: Sequence[str | Path]) -> list[Photo | PhotoError]:
    """Each path as a Photo, or a PhotoError (missing, unreadable, not an image), in the given order."""
    out: list[Photo | PhotoError] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            out.append(PhotoError(str(path), f"cannot be read ({e.strerror or e}): check the path."))
            continue
        out.append(open_photo(str(path), data))
    return out
