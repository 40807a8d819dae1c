"""Why a photo scores what it does: an occlusion map of the final (blended) score, as an overlay.

Occlusion greys out one square window at a time (the photo's mean colour) and records how much the
final score drops: a region whose removal lowers the score is one that raises it (red); one whose
removal raises the score holds the photo back (blue). It explains the blend, SVR head included, because
it needs only forward passes (the SVR is not differentiable).

The windows are fractions of the photo's side, laid on each model's own pixels: every run and every
frozen source sees the photo squashed to its size exactly as `score` gives it, with the window greyed
out there. So the unoccluded copy scores exactly what `score` reports, whatever sizes the ensemble mixes.
(Captum's Occlusion works on one tensor at one size, which is why it is not used.)
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pawcore.artifacts import atomic_path
from pawcore.errors import ConfigError

from .crop import FoldScorer
from .photos import Photo, PhotoError

MAP_SIDE = 64  # resolution of the returned map (fractions of the side; drawn smoothly over the photo)
# 4 x 4 disjoint windows: 16 forward passes of every network, which keeps a heatmap interactive on a CPU
# (benchmarks/bench_score.py measured the old 7 x 7 overlapping grid too); smaller windows give finer maps.
WINDOW, STRIDE = 1 / 4, 1 / 4


@dataclass
class Heatmap:
    """values: (MAP_SIDE, MAP_SIDE) mean drop of the final score when each region is greyed out.
    unoccluded: the final score of the copy with nothing greyed out (equal to the photo's score)."""

    values: np.ndarray
    unoccluded: float


def windows(window: float, stride: float) -> list[tuple[float, float, float, float]]:
    """Square windows (y0, x0, y1, x1, as fractions of the side) on a grid with the given stride,
    the last row and column flush with the edge."""
    starts = np.unique(np.append(np.arange(0, 1 - window + 1e-9, stride), 1 - window))
    return [(y, x, y + window, x + window) for y in starts for x in starts]


def _span(lo: float, hi: float, side: int) -> slice:
    return slice(int(round(lo * side)), max(int(round(hi * side)), int(round(lo * side)) + 1))


def _in_square(lo: float, hi: float, photo_side: int, other_side: int, mode: str) -> tuple[float, float]:
    """A span [lo, hi) of one side of the photo (fractions) as fractions of that side of the model's square,
    given how the square was made (pawcore.images.resize_square); empty (hi <= lo) where it is cut off."""
    if mode == "crop" and photo_side > other_side:  # the square is the central other_side x other_side
        start = (photo_side - other_side) / 2 / photo_side
        return (max(0.0, (lo - start) * photo_side / other_side), min(1.0, (hi - start) * photo_side / other_side))
    if mode == "pad" and photo_side < other_side:  # the photo is centred, shrunk along this side
        start = (other_side - photo_side) / 2 / other_side
        return start + lo * photo_side / other_side, start + hi * photo_side / other_side
    return lo, hi


class OccludedPhoto:
    """An `ImageSet`: the photo (index 0), then one copy per window with that window filled with `fill`,
    at whatever size and resize mode a model asks for. Windows are fractions of the photo's sides, cut
    from each model's own square where that part of the photo lies in it (nowhere, for a part that a
    crop-mode square leaves out), so every model sees the same region greyed out."""

    def __init__(self, photo: Photo, boxes: Sequence[tuple[float, float, float, float]]):
        self.photo, self.boxes = photo, list(boxes)
        self.fill = photo.rgb().reshape(-1, 3).mean(axis=0).round().astype(np.uint8)

    def __len__(self) -> int:
        return 1 + len(self.boxes)

    def pixels(self, size: int, resize: str = "squash") -> np.ndarray:
        w, h = self.photo.width, self.photo.height
        out = np.repeat(self.photo.rgb(size, resize)[None], len(self), axis=0)
        for i, (y0, x0, y1, x1) in enumerate(self.boxes, start=1):
            (sy0, sy1), (sx0, sx1) = _in_square(y0, y1, h, w, resize), _in_square(x0, x1, w, h, resize)
            if sy1 > sy0 and sx1 > sx0:
                out[i, _span(sy0, sy1, size), _span(sx0, sx1, size)] = self.fill
        return out


def occlusion_map(model: FoldScorer, photo: Photo, window: float = WINDOW, stride: float = STRIDE) -> Heatmap:
    """Grey out each window in turn (one batch through every fold) and map the score's drops."""
    boxes = windows(window, stride)
    final = model.final(model.fold_scores(OccludedPhoto(photo, boxes)))
    drop = final[0] - final[1:]
    total, count = np.zeros((MAP_SIDE, MAP_SIDE)), np.zeros((MAP_SIDE, MAP_SIDE))
    for d, (y0, x0, y1, x1) in zip(drop, boxes):
        region = (_span(y0, y1, MAP_SIDE), _span(x0, x1, MAP_SIDE))
        total[region] += d
        count[region] += 1
    return Heatmap(np.divide(total, count, out=np.zeros_like(total), where=count > 0).astype(np.float32),
                   float(final[0]))


def heat_rgba(heat: np.ndarray, width: int, height: int, max_alpha: float = 0.6) -> np.ndarray:
    """(height, width, 4) uint8: red where the region raises the score, blue where it lowers it."""
    heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_CUBIC)
    scale = float(np.abs(heat).max()) or 1.0
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0] = np.where(heat > 0, 230, 30)
    rgba[..., 1] = 40
    rgba[..., 2] = np.where(heat > 0, 30, 230)
    rgba[..., 3] = np.clip(np.abs(heat) / scale * max_alpha * 255, 0, 255).astype(np.uint8)
    return rgba


def overlay(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The photo with the heatmap blended over it (for the command line's PNG files)."""
    rgba = heat_rgba(heat, rgb.shape[1], rgb.shape[0])
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return (rgb * (1 - alpha) + rgba[..., :3] * alpha).round().astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """RGB or RGBA uint8 -> PNG file bytes."""
    code = cv2.COLOR_RGBA2BGRA if image.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, code))
    assert ok, "PNG encoding of a uint8 array cannot fail"
    return buf.tobytes()


def check_heatmap_dir(out_dir: str | Path) -> Path:
    """The heatmap directory, created if missing and checked writable before any work; ConfigError if not."""
    out = Path(out_dir)
    fix = "give --heatmap a directory you can write to (it is created if missing)"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--heatmap {out} is a file, not a directory: {fix}.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # the real test: permissions, read-only mounts, ACLs, quotas
            pass
    except OSError as e:
        raise ConfigError(f"--heatmap {out}: cannot write there ({e.strerror or e}): {fix}.") from None
    return out


def heatmap_names(names: Sequence[str]) -> list[str]:
    """One heatmap file name per photo: <stem>-heatmap.png, and for a stem already taken (compared without case,
    as a case-insensitive filesystem would) -2, -3, ... after the stem, in the order given. `score --help` says so."""
    used: set[str] = set()
    out = []
    for name in names:
        stem, n = Path(name).stem, 1
        while (candidate := f"{stem}{'' if n == 1 else f'-{n}'}-heatmap.png").casefold() in used:
            n += 1
        used.add(candidate.casefold())
        out.append(candidate)
    return out


def write_heatmaps(results, items: Sequence[Photo | PhotoError], out_dir: Path) -> int:
    """Write each scored photo's overlay to out_dir (named by `heatmap_names`); report each on stderr.

    A heatmap that cannot be written is that photo's own error line; the others are still written.
    Returns how many failed.
    """
    done = [(r, item) for r, item in zip(results, items) if r.heat is not None]
    failed = 0
    for (r, item), name in zip(done, heatmap_names([r.name for r, _ in done])):
        path = out_dir / name
        try:
            with atomic_path(path) as tmp:  # never a half-written PNG under the final name
                tmp.write_bytes(png_bytes(overlay(item.rgb(), r.heat.values)))
        except OSError as e:
            failed += 1
            print(f"{r.name}: error: heatmap not written to {path} ({e.strerror or e}).", file=sys.stderr)
        else:
            print(f"Heatmap of {r.name}: {path}", file=sys.stderr)
    return failed
