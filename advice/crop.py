"""Suggested crop, with a gain measured by models that did not choose it.

Candidates: the whole photo, then boxes of aspect ratios 1:1, 4:5, 4:3 and the photo's own, at scales
from the largest box of that ratio down to the smallest that keeps `min_crop` of each side, on a grid
of positions. All are cut from the photo's one decode and scored in one batch by every fold.

The best of many noisy scores beats the photo by chance, so the ensemble's own score of its favourite
crop overstates the gain. The folds are split in two halves instead: each half picks its best candidate
(possibly the whole photo) and the other half scores that pick against the photo; the held-out gain is
the mean of the two directions, `gain_sd` the spread of the judging folds' gains. A crop is suggested
only when the held-out gain is clearly positive (`clearly_positive`): at least MIN_GAIN points, and above
zero by a one-sided t-test at 2.5% over the judging folds. Otherwise the advice is to keep the photo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pawcore.images import ArrayImages, ImageSet

from .config import check_min_crop
from .photos import Photo

ASPECTS = {"1:1": 1.0, "4:5": 4 / 5, "4:3": 4 / 3, "same as photo": None}  # width / height
MIN_GAIN = 1.0  # Pawpularity points: a held-out gain below this is not worth a volunteer's time
# The grid: the largest box of each ratio and the smallest --min-crop allows, at 2 x 2 positions (~17
# boxes). Measured on oxford (benchmarks/bench_score.py, RESULTS.md): p50 1.8 s on a 2-core CPU, a crop
# suggested for 9 of 10 photos, held-out gain +14.2 points; 3 x 3 positions (~34 boxes) found +17.5 in
# 3.9 s and 3 scales (~61 boxes) +18.2 in 8.1 s. Pass n_positions=3 for the finer search.
N_SCALES, N_POSITIONS = 2, 2

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in upright pixels, x1/y1 exclusive


class FoldScorer(Protocol):
    """What the crop search needs of a model: each fold's (unclipped) scores, and their final score.
    `inference.ensemble.Ensemble` is one; tests use others."""

    def fold_scores(self, images: ImageSet) -> np.ndarray: ...

    def final(self, fold_scores: np.ndarray) -> np.ndarray: ...


@dataclass
class Crop:
    """The advice on framing. `best_*`: the candidate all folds score highest (possibly the whole photo;
    its score is optimistic: it won among many). `box` is what to post: `best_box` when `suggested`, else
    the whole photo. gain / gain_sd: the held-out gain of cropping and its spread over the judging folds
    (None with a single fold: nothing to hold out)."""

    photo_box: Box
    photo_score: float  # the whole photo's final score, from the same batch as the candidates
    best_box: Box
    best_aspect: str
    best_score: float
    suggested: bool
    gain: float | None
    gain_sd: float | None
    n_candidates: int

    @property
    def box(self) -> Box:
        return self.best_box if self.suggested else self.photo_box

    @property
    def reason(self) -> str:
        if self.gain is None:
            return "a run with one fold cannot measure a crop's gain on models that did not choose it"
        if self.suggested:
            return f"held-out gain {self.gain:+.1f} ± {self.gain_sd:.1f} points"
        return f"no crop clearly helps (held-out gain {self.gain:+.1f} ± {self.gain_sd:.1f} points)"


def candidate_boxes(width: int, height: int, min_crop: float = 0.5, n_scales: int = N_SCALES,
                    n_positions: int = N_POSITIONS) -> list[tuple[Box, str]]:
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


def held_out_gain(fold_scores: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(gain, gain_sd, gains): candidate 0 is the photo; each half of the folds picks a candidate and
    the other half's folds score it against the photo. `gains` holds one value per judging fold."""
    n_folds = len(fold_scores)
    halves = (np.arange(0, n_folds, 2), np.arange(1, n_folds, 2))  # interleaved: sizes differ by one at most
    gains, means = [], []
    for pick, judge in (halves, halves[::-1]):
        chosen = int(np.argmax(fold_scores[pick].mean(axis=0)))  # the photo itself may win: gain 0
        g = fold_scores[judge, chosen] - fold_scores[judge, 0]
        gains.append(g)
        means.append(float(g.mean()))
    gains = np.concatenate(gains)
    return float(np.mean(means)), float(gains.std(ddof=1)), gains


def clearly_positive(gain: float, gain_sd: float, n_folds: int) -> bool:
    """The rule for suggesting a crop: at least MIN_GAIN points, and above zero by a one-sided t-test at
    2.5% over the judging folds' gains (gain >= t(0.975, folds - 1) x gain_sd / sqrt(folds))."""
    from scipy.stats import t

    return gain >= MIN_GAIN and gain >= float(t.ppf(0.975, n_folds - 1)) * gain_sd / math.sqrt(n_folds)


def suggest_crop(model: FoldScorer, photo: Photo, min_crop: float = 0.5, n_scales: int = N_SCALES,
                 n_positions: int = N_POSITIONS) -> Crop:
    """Score the photo and every candidate in one batch; suggest the all-folds favourite only when the
    held-out gain says cropping clearly helps."""
    boxes = [((0, 0, photo.width, photo.height), "photo")]
    boxes += candidate_boxes(photo.width, photo.height, min_crop, n_scales, n_positions)
    full = photo.rgb()
    per_fold = model.fold_scores(ArrayImages([crop_pixels(full, box) for box, _ in boxes]))
    final = model.final(per_fold)
    best = int(np.argmax(final))
    gain = gain_sd = None
    if len(per_fold) >= 2:
        gain, gain_sd, _ = held_out_gain(per_fold)
    suggested = best != 0 and gain is not None and clearly_positive(gain, gain_sd, len(per_fold))
    return Crop(boxes[0][0], float(final[0]), boxes[best][0], boxes[best][1], float(final[best]), suggested,
                gain, gain_sd, len(boxes))
