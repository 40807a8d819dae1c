"""Photos from files or uploads, decoded once, exactly as the image cache decodes a data split.

`pawcore.images.load_rgb` is the one decoder: EXIF-upright, RGB whatever the mode, a full decode. A
`Photo` keeps that decode; every model size, every crop candidate and every occluded copy of the heatmap
is cut and squashed from it with `resize_square`, as the image cache squashes a split's photos, so a photo
scores what `infer` gives it and its uncropped box scores exactly the photo's score. A photo that cannot
be decoded becomes a `PhotoError` holding a message for that photo alone; the others are still scored.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pawcore.images import (ACCEPTED_FORMATS, DECODE_ERRORS, NotAPhotoError, decode_reason, load_rgb, open_image,
                            resize_square)

MAX_PIXELS = 50_000_000  # a larger photo is refused (memory), with a message saying so


@dataclass
class PhotoError:
    name: str
    error: str


@dataclass
class Photo:
    """One photo: its bytes (read once), its upright size and its one full-resolution decode."""

    name: str
    data: bytes
    width: int
    height: int
    full: np.ndarray = field(repr=False)  # (height, width, 3) uint8, upright RGB

    def rgb(self, size: int | None = None, resize: str = "squash") -> np.ndarray:
        """Upright RGB uint8: full size (None) or made size x size (`resize` mode) as the image cache does."""
        return self.full if size is None else resize_square(self.full, size, resize)


class PhotoImages:
    """An `ImageSet` of photos: pixels(size) squashes each photo's one decode to the size a model asks for."""

    def __init__(self, photos: Sequence[Photo]):
        self.photos = list(photos)

    def __len__(self) -> int:
        return len(self.photos)

    def pixels(self, size: int, resize: str = "squash") -> np.ndarray:
        if not self.photos:
            return np.empty((0, size, size, 3), np.uint8)
        return np.stack([p.rgb(size, resize) for p in self.photos])


def open_photo(name: str, data: bytes, max_pixels: int = MAX_PIXELS, uploaded: bool = False) -> Photo | PhotoError:
    """Check that `data` is a whole, decodable photo of a sane size; a PhotoError says why not.

    `uploaded`: the bytes came from a browser or HTTP client (serve), not a local file (score), which
    changes only how the fix is worded.
    """
    try:
        with open_image(io.BytesIO(data)) as img:  # only PHOTO_FORMATS: no other decoder is ever called
            if img.width * img.height > max_pixels:
                return PhotoError(name, f"{img.width}x{img.height} pixels is more than the limit of "
                                        f"{max_pixels / 1e6:.0f} megapixels: resize the photo first.")
        # The one full decode, kept: a truncated JPEG fails here, not halfway through scoring.
        full = load_rgb(io.BytesIO(data))
    except DECODE_ERRORS as e:
        return PhotoError(name, _decode_message(e, uploaded, max_pixels))
    return Photo(name, data, full.shape[1], full.shape[0], full)


def _decode_message(error: BaseException, uploaded: bool, max_pixels: int) -> str:
    """What went wrong and the fix, worded for who holds the file: a local user (score) or a web page (serve).

    The command line names the decoder's reason; a volunteer on the page gets plain words and one fix.
    """
    if uploaded:
        return _upload_message(error, max_pixels)
    again = "copy the photo again from where it came from"
    if isinstance(error, NotAPhotoError) and error.empty:
        return f"empty file (0 bytes): it holds no data; {again}."
    if isinstance(error, NotAPhotoError):
        return f"cannot be decoded as an image: {error}; save or export it as JPEG first."
    if isinstance(error, Image.DecompressionBombError):  # so big that Pillow refused to open it
        return f"too many pixels (more than the limit of {max_pixels / 1e6:.0f} megapixels): resize the photo first."
    return f"cannot be decoded as an image: {decode_reason(error)}; {again}."


def _upload_message(error: BaseException, max_pixels: int) -> str:
    if isinstance(error, NotAPhotoError) and error.empty:
        return "This file is empty (0 bytes): choose the photo again."
    if isinstance(error, NotAPhotoError):
        what = f" (its format is {error.kind})" if error.kind else ""
        return f"This file is not a photo we can read{what}: use {ACCEPTED_FORMATS}."
    if isinstance(error, Image.DecompressionBombError):
        return (f"This photo has too many pixels (the limit is {max_pixels / 1e6:.0f} megapixels): "
                f"make it smaller first.")
    return "This photo is damaged or incomplete, so it cannot be opened: choose it again, or save it again as JPEG."


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
