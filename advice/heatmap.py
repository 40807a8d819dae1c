"""Why a photo scores what it does: Captum's Occlusion on the final (blended) score, as an overlay.

Occlusion greys out one square window at a time (the photo's mean colour) and records how much the
final score drops: a region whose removal lowers the score is one that raises it (red); one whose
removal raises the score holds the photo back (blue). It explains the blend, SVR head included, because
it needs only forward passes (the SVR is not differentiable).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from captum.attr import Occlusion

from inference.ensemble import Ensemble
from pawcore.images import ArrayImages
from pawcore.artifacts import atomic_path
from pawcore.errors import ConfigError

from .photos import Photo, PhotoError


def model_size(ensemble: Ensemble) -> int:
    """The largest input size among the ensemble's runs: the resolution the occlusion works at."""
    return max(p.img_size for p in ensemble.predictors.values())


def occlusion_map(ensemble: Ensemble, photo: Photo, window: float = 1 / 4, stride: float = 1 / 8,
                  batch_size: int = 64) -> np.ndarray:
    """(size, size) float32: mean drop of the final score when each pixel's neighbourhood is occluded.

    `window` and `stride` are fractions of the side: 1/4 and 1/8 give 7 x 7 window positions, each one
    a forward pass of every fold (batched `batch_size` at a time).
    """
    size = model_size(ensemble)
    # The square the largest run sees, in its resize mode: exactly the pixels `score` sees at this size. The
    # occluded squares are resized square to square for other runs, which is the same in every mode.
    resize = next(p.resize for p in ensemble.predictors.values() if p.img_size == size)
    pixels = photo.rgb(size, resize)

    def final_score(batch: torch.Tensor) -> torch.Tensor:
        images = batch.round().clamp(0, 255).to(torch.uint8).numpy()
        return torch.from_numpy(ensemble.score(ensemble.heads(ArrayImages(list(images))))).float()

    x = torch.from_numpy(pixels).float().unsqueeze(0)  # (1, H, W, 3): window over rows, columns, all channels
    baseline = x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()
    win, step = max(1, round(size * window)), max(1, round(size * stride))
    attr = Occlusion(final_score).attribute(x, sliding_window_shapes=(win, win, 3), strides=(step, step, 3),
                                            baselines=baseline, perturbations_per_eval=batch_size)
    return attr[0].mean(dim=-1).numpy().astype(np.float32)


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
                tmp.write_bytes(png_bytes(overlay(item.rgb(), r.heat)))
        except OSError as e:
            failed += 1
            print(f"{r.name}: error: heatmap not written to {path} ({e.strerror or e}).", file=sys.stderr)
        else:
            print(f"Heatmap of {r.name}: {path}", file=sys.stderr)
    return failed
