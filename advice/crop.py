"""Suggested crop: the candidate box (aspect ratio x scale x position) with the highest final score.

Candidates: aspect ratios 1:1, 4:5, 4:3 and the photo's own, scales from the largest box of that
ratio down to the smallest that keeps `min_crop` of each side, and positions on a grid. All are scored
in batches through the same ensemble as the photo. The uncropped photo is a candidate with its exact
score (the image-cache decode), so the suggestion never scores below the photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.ensemble import Ensemble
from pawcore.images import ArrayImages

from .config import check_min_crop
from .photos import Photo
from .score import score_images

ASPECTS = {"1:1": 1.0, "4:5": 4 / 5, "4:3": 4 / 3, "original": None}  # width / height

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in upright pixels, x1/y1 exclusive


@dataclass
class Crop:
    box: Box
    score: float
    aspect: str
    n_candidates: int


def candidate_boxes(width: int, height: int, min_crop: float = 0.5, n_scales: int = 4,
                    n_positions: int = 3) -> list[tuple[Box, str]]:
    """Distinct boxes inside the photo, each side >= min_crop of the photo's; the full photo left out."""
    check_min_crop(min_crop)
    min_w, min_h = min_crop * width, min_crop * height
    seen: dict[Box, str] = {}
    for name, aspect in ASPECTS.items():
        ratio = width / height if aspect is None else aspect
        # The largest box of this ratio that fits, then smaller ones down to the min_crop limit.
        big_w, big_h = (ratio * height, height) if width / height > ratio else (width, width / ratio)
        smallest = max(min_w / big_w, min_h / big_h)
        if smallest > 1 + 1e-9:
            continue  # e.g. 4:5 on a panorama: it cannot keep half of the width
        for scale in np.linspace(1.0, min(smallest, 1.0), n_scales):
            w = min(width, max(1, int(round(big_w * scale))))
            h = min(height, max(1, int(round(big_h * scale))))
            for x0 in np.linspace(0, width - w, n_positions):
                for y0 in np.linspace(0, height - h, n_positions):
                    box = (int(round(x0)), int(round(y0)), int(round(x0)) + w, int(round(y0)) + h)
                    if box != (0, 0, width, height):
                        seen.setdefault(box, name)
    return list(seen.items())


def crop_pixels(rgb: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return rgb[y0:y1, x0:x1]


def suggest_crop(ensemble: Ensemble, photo: Photo, photo_score: float, min_crop: float = 0.5,
                 n_scales: int = 4, n_positions: int = 3) -> Crop:
    """The best-scoring candidate; `photo_score` is the uncropped photo's (exact) final score."""
    candidates = candidate_boxes(photo.width, photo.height, min_crop, n_scales, n_positions)
    rgb = photo.rgb()  # full resolution: each crop is squashed to the model's size from the real pixels
    scores = [s.score for s in score_images(ensemble, ArrayImages([crop_pixels(rgb, b) for b, _ in candidates]))]
    best = int(np.argmax(scores)) if scores else -1
    if best < 0 or scores[best] <= photo_score:
        return Crop((0, 0, photo.width, photo.height), photo_score, "photo", len(candidates) + 1)
    box, aspect = candidates[best]
    return Crop(box, scores[best], aspect, len(candidates) + 1)
