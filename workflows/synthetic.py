"""A small generated dataset in the Kaggle layout, with a visual signal a model can learn.

Each photo is a noisy, tinted background with a 'pet face' (a furry ellipse with two eyes and a nose)
at a random place. Pawpularity grows with the face's size relative to the photo, like the real
photos' `Near`/`Face` effect, so an image model must look at the photo to predict it. Sizes and aspect
ratios vary as in real uploads. Used by the demo (the README's first command) and the tests.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pawcore.data import META_COLS


def _photo(rng: np.random.Generator, score: float, min_side: int, max_side: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    base = rng.integers(40, 215, size=3)
    ramp = np.linspace(-30, 30, w)[None, :, None] * rng.uniform(-1, 1)
    img = base[None, None, :] + ramp + rng.normal(0, 18, size=(h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    # Face size: radius grows with the score (score 1 -> 8% of the short side, 100 -> 45%).
    short = min(h, w)
    r = short * (0.08 + 0.37 * (score - 1) / 99)
    cx = int(rng.uniform(r, w - r)) if w > 2 * r else w // 2
    cy = int(rng.uniform(r, h - r)) if h > 2 * r else h // 2
    fur = tuple(int(c) for c in rng.integers(0, 256, size=3))
    cv2.ellipse(img, (cx, cy), (int(r), int(r * 0.85)), 0, 0, 360, fur, -1)
    for ear in (-1, 1):  # ears: triangles above the face
        pts = np.array([[cx + ear * r * 0.9, cy - r * 0.2], [cx + ear * r * 0.3, cy - r * 0.7],
                        [cx + ear * r * 0.8, cy - r * 1.1]], np.int32)
        cv2.fillPoly(img, [pts], fur)
    for eye in (-1, 1):
        cv2.circle(img, (int(cx + eye * r * 0.35), int(cy - r * 0.15)), max(1, int(r * 0.12)), (20, 20, 20), -1)
    cv2.circle(img, (cx, int(cy + r * 0.25)), max(1, int(r * 0.09)), (60, 30, 30), -1)
    return img


def make_dataset(out_dir: str | Path, n_train: int = 240, n_test: int = 60, seed: int = 0,
                 min_side: int = 96, max_side: int = 256, with_meta: bool = True) -> Path:
    """Write train.csv, train/*.jpg, test.csv, test/*.jpg and test_labels.csv under `out_dir`."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        scores = np.clip(np.round(rng.beta(2.0, 3.0, size=n) * 99 + 1), 1, 100).astype(int)
        ids = [f"{split}{seed:03d}{i:05d}" for i in range(n)]
        for id_, score in zip(ids, scores):
            rgb = _photo(rng, float(score), min_side, max_side)
            cv2.imwrite(str(out_dir / split / f"{id_}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        frame = pd.DataFrame({"Id": ids})
        if with_meta:
            flags = rng.integers(0, 2, size=(n, len(META_COLS)))
            flags[:, META_COLS.index("Near")] = scores > 50  # a flag that carries real signal
            flags[:, META_COLS.index("Face")] = 1
            frame[META_COLS] = flags
        if split == "train":
            frame["Pawpularity"] = scores
            frame.to_csv(out_dir / "train.csv", index=False)
        else:
            frame.to_csv(out_dir / "test.csv", index=False)
            pd.DataFrame({"Id": ids, "Pawpularity": scores}).to_csv(out_dir / "test_labels.csv", index=False)
    return out_dir
