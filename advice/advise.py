"""Everything the command line and the web page show for a batch of photos, computed in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from inference.ensemble import Ensemble

from .crop import Crop, suggest_crop
from .heatmap import occlusion_map
from .photos import Photo, PhotoError
from .score import Scores, score_photos


@dataclass
class Advice:
    """One photo's result: scores (+ crop, heatmap when asked), or the error that stopped it."""

    name: str
    scores: Scores | None = None
    crop: Crop | None = None
    heat: np.ndarray | None = None  # (size, size) occlusion map of the squashed photo
    error: str | None = None
    width: int = 0
    height: int = 0

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.name, "error": self.error}
        out: dict[str, Any] = {"path": self.name, "score": self.scores.score, "nn": self.scores.nn,
                               "svr": self.scores.svr, "heads": self.scores.heads,
                               "width": self.width, "height": self.height}
        if self.crop is not None:
            out["crop"] = {"box": list(self.crop.box), "score": self.crop.score, "aspect": self.crop.aspect,
                           "gain": self.crop.score - self.scores.score, "candidates": self.crop.n_candidates}
        return out


def advise(ensemble: Ensemble, items: Sequence[Photo | PhotoError], crop: bool = False, heatmap: bool = False,
           min_crop: float = 0.5) -> list[Advice]:
    """Score every decodable photo in one batch; crop search and heatmap per photo when asked."""
    photos = [p for p in items if isinstance(p, Photo)]
    scores = dict(zip(map(id, photos), score_photos(ensemble, photos)))
    out = []
    for item in items:
        if isinstance(item, PhotoError):
            out.append(Advice(item.name, error=item.error))
            continue
        s = scores[id(item)]
        out.append(Advice(item.name, s, width=item.width, height=item.height,
                          crop=suggest_crop(ensemble, item, s.score, min_crop) if crop else None,
                          heat=occlusion_map(ensemble, item) if heatmap else None))
    return out
