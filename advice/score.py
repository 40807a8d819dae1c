"""A submission's final score for photos: the ensemble that `infer` recorded in ensemble.json, replayed.

`infer` writes ensemble.json (runs, head weights, TTA) beside the submission; `photo_ensemble` reads it
and `score_photos` sends photos through the same `Ensemble.heads` and `Ensemble.score` as the test split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from inference.ensemble import HEAD_KINDS, Ensemble, load_ensemble
from pawcore.errors import ArtifactError
from pawcore.images import ImageSet

from .photos import Photo, PhotoImages


@dataclass
class Scores:
    """One image's final score and its heads (`nn`, `svr`: each kind averaged over the runs; `heads`: every
    head by name, a GBDT head included)."""

    score: float
    nn: float
    svr: float
    heads: dict[str, float] = field(default_factory=dict)


def photo_ensemble(artifacts_dir: str | Path, run: str, ensemble_json: str | Path | None = None,
                   device: str = "auto", batch_size: int = 64) -> Ensemble:
    """The ensemble `infer` used for run `run` (inference.ensemble.load_ensemble), refused if it needs
    the metadata flags, which a photo alone does not have."""
    ensemble = load_ensemble(artifacts_dir, run, ensemble_json, device, batch_size)
    if ensemble.needs_meta:
        raise ArtifactError(f"Run(s) {ensemble.spec.runs} were trained with the 12 metadata flags (--use-meta), "
                            f"which a photo alone does not have. Score photos with a run trained without --use-meta.")
    return ensemble


def score_images(ensemble: Ensemble, images: ImageSet) -> list[Scores]:
    """Every image's final score and heads, in one batched pass of each run's folds."""
    if len(images) == 0:
        return []
    heads = ensemble.heads(images)
    final = ensemble.score(heads)
    by_kind = {kind: np.mean([v for name, v in heads.items() if name.endswith(f":{kind}")], axis=0)
               for kind in HEAD_KINDS if any(name.endswith(f":{kind}") for name in heads)}
    return [Scores(float(final[i]), float(by_kind["nn"][i]), float(by_kind["svr"][i]),
                   {name: float(v[i]) for name, v in heads.items()}) for i in range(len(images))]


def score_photos(ensemble: Ensemble, photos: Sequence[Photo]) -> list[Scores]:
    return score_images(ensemble, PhotoImages(photos))
