"""A finished run, loaded once, that scores images: the NN head and the stage-2 heads (SVR, and GBDT when
fit-svr fitted one) of every fold.

`infer` feeds it the test split (decoded through the on-disk image cache); `score` and `serve` feed it
photos held in memory. Both go through `RunPredictor.heads`, and every feature comes from the feature
bank that fit-svr used, so a photo scores the same either way and as fit-svr would have.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pawcore.errors import ArtifactError
from pawcore.images import ImageSet
from pawcore.metrics import clip_score
from pawcore.run import RunDir
from pawcore.views import IDENTITY, tta_views
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.model import logits_to_score
from stage1_backbone.predict import pick_device
from stage2_svr.bank import FeatureBank
from stage2_svr.manifest import Stage2Manifest

log = logging.getLogger(__name__)


class RunPredictor:
    """Every fold's network and head of one run, verified against the manifests and kept in memory.

    `cache_dir` (optional) keeps features of cached splits on disk (the feature bank's cache), so a
    second infer with other blend settings computes nothing. It is never under the artifacts being
    read: those may be read-only (a Kaggle input dataset).
    """

    def __init__(self, run: RunDir, device: str = "auto", batch_size: int = 64, num_workers: int = 0,
                 cache_dir: Path | None = None):
        self.run, self.batch_size, self.num_workers, self.cache_dir = run, batch_size, num_workers, cache_dir
        self.device = str(pick_device(device))
        self.stage1 = Stage1Manifest.load(run)
        self.stage2 = Stage2Manifest.load(run)
        self.stage2.check_built_on(self.stage1)
        self.stage2.check_frozen_unchanged()
        self.stage2_kinds = self.stage2.head_kinds  # "svr", then any other head fit-svr fitted ("gbdt")
        # each head's sources: exactly the ones fit-svr gave it, in its column order
        self.sources = {kind: self.stage2.head_sources(kind) for kind in self.stage2_kinds}
        self.folds = sorted(self.stage1.folds)
        self.img_size = self.stage1.img_size
        self.resize = self.stage1.resize
        self.needs_meta = self.stage1.model["n_meta"] > 0 or self.stage2.use_meta
        self.models = {k: self.stage1.fold_model(k) for k in self.folds}
        self.heads_of = {(k, kind): self.stage2.load_head(k, kind) for k in self.folds for kind in self.stage2_kinds}

    @property
    def kinds(self) -> list[str]:
        """Every head of the run: "nn", then the stage-2 heads."""
        return ["nn", *self.stage2_kinds]

    def bank(self, images: ImageSet, meta: np.ndarray | None = None) -> FeatureBank:
        """The feature bank of these images, fed by this run's fold networks."""
        if self.needs_meta and meta is None:
            raise ArtifactError(f"Run {self.run.run!r} was trained with the 12 metadata flags (--use-meta); "
                                f"give them for these images too.")
        return FeatureBank(self.stage1, images, self.cache_dir, meta=meta, batch_size=self.batch_size,
                           device=self.device, num_workers=self.num_workers, fold_model=self.models.__getitem__)

    def heads(self, images: ImageSet, meta: np.ndarray | None = None,
              tta: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """{"nn": (N,), "svr": (N,), ...}: each head of `kinds` averaged over the folds and the test-time
        views: the photo itself and those `tta` names (pawcore/views.py; e.g. ("flip",))."""
        return {kind: scores.mean(axis=0) for kind, scores in self.heads_by_fold(images, meta, tta).items()}

    def heads_by_fold(self, images: ImageSet, meta: np.ndarray | None = None,
                      tta: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """{"nn": (folds, N), "svr": (folds, N), ...}: each fold's heads (in `self.folds` order), views
        averaged."""
        bank = self.bank(images, meta)
        views = tta_views(tta)
        per_fold = [self.fold_heads(bank, k, views) for k in self.folds]
        return {kind: np.stack([fold[kind] for fold in per_fold]) for kind in self.kinds}

    @torch.inference_mode()
    def fold_heads(self, bank: FeatureBank, k: int, views: Sequence[str] = (IDENTITY,)) -> dict[str, np.ndarray]:
        """Fold k's scores of the bank's images, {kind: (N,)} for every head, each averaged over the views."""
        model = self.models[k]
        meta = torch.from_numpy(np.asarray(bank.meta, np.float32)) if model.n_meta else None
        per_view: dict[str, list[np.ndarray]] = {kind: [] for kind in self.kinds}
        for view in views:
            emb = torch.from_numpy(bank.tuned(k, view))  # one forward pass feeds every head
            on = model.head.weight.device  # after that pass: wherever the backbone ran (none if cached)
            emb = emb.to(on)
            logits = model.head_logits(emb, meta.to(on) if meta is not None else None)
            per_view["nn"].append(logits_to_score(logits).cpu().numpy())
            for kind in self.stage2_kinds:
                X = bank.matrix(k, self.sources[kind], view, with_meta=self.stage2.use_meta)
                if X.shape[1] != self.stage2.head_n_features(kind):
                    raise ArtifactError(f"Run {self.run.run!r}: the {kind.upper()} head's input has {X.shape[1]} "
                                        f"features here but {self.stage2.head_n_features(kind)} in fit-svr. Re-run "
                                        f"fit-svr for this run.")
                scores = clip_score(self.heads_of[k, kind].predict(X))
                per_view[kind].append(self.stage2.calibrate(k, scores, kind))
        return {kind: np.mean(views_of, axis=0) for kind, views_of in per_view.items()}
