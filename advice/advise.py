"""Everything the command line and the web page show for a batch of photos, computed in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


from inference.ensemble import Ensemble

from .crop import Crop, suggest_crop
from .heatmap import Heatmap, occlusion_map
from .photos import Photo, PhotoError
from .score import Scores, score_photos


@dataclass
class Advice:
    """One photo's result: scores (+ crop, heatmap when asked), or the error that stopped it."""

    name: str
    scores: Scores | None = None
    crop: Crop | None = None
    heat: Heatmap | None = None
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
            c = self.crop
            out["crop"] = {"suggested": c.suggested, "box": list(c.box), "gain": c.gain, "gain_sd": c.gain_sd,
                           "reason": c.reason, "best_box": list(c.best_box), "best_aspect": c.best_aspect,
                           "best_score": c.best_score, "candidates": c.n_candidates}
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
                          crop=suggest_crop(ensemble, item, min_crop) if crop else None,
                          heat=occlusion_map(ensemble, item) if heatmap else None))
    return out
