"""A finished run, loaded once, that scores images: the NN head and the SVR head of every fold.

`infer` feeds it the test split (decoded through the on-disk image cache); `score` and `serve` feed it
photos held in memory. Both go through `RunPredictor.heads`, so a photo scores the same either way.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from pawcore.artifacts import load_pickle_verified, read_json
from pawcore.errors import ArtifactError
from pawcore.images import images_key
from pawcore.run import RunDir, load_manifest, manifest_digest
from stage1_backbone.model import load_fold_model, logits_to_score
from stage1_backbone.predict import pick_device
from stage2_svr.backends import predict_numpy
from stage2_svr.embeddings import embedding_cache_path, fold_embeddings
from stage2_svr.bank import ImageSet, assemble, check_frozen_unchanged, frozen_blocks
from stage2_svr.features import standardize
from stage2_svr.sources import parse_source

log = logging.getLogger(__name__)


class ArrayImages:
    """RGB photos already in memory (any sizes), squashed to size x size as the image cache does."""

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, size: int) -> np.ndarray:
        out = np.empty((len(self.images), size, size, 3), np.uint8)
        for i, rgb in enumerate(self.images):
            out[i] = rgb if rgb.shape[:2] == (size, size) else cv2.resize(rgb, (size, size),
                                                                         interpolation=cv2.INTER_AREA)
        return out


def load_stages(run: RunDir) -> tuple[dict, dict]:
    """Both manifests, checked: files present and unchanged, stage 2 built on today's stage 1."""
    stage1 = load_manifest(run, "stage1")
    stage2 = load_manifest(run, "stage2")
    if stage2["stage1_manifest_sha256"] != manifest_digest(run, "stage1"):
        raise ArtifactError(f"Stage 1 of run {run.run!r} changed after fit-svr ran. Run "
                            f"`python pipeline.py fit-svr --run {run.run} --artifacts-dir {run.artifacts_dir}`.")
    if set(stage1["folds"]) != set(stage2["folds"]):
        raise ArtifactError(f"Stage 1 has folds {sorted(stage1['folds'])} but stage 2 has {sorted(stage2['folds'])}. "
                            f"Run `python pipeline.py fit-svr --run {run.run} --artifacts-dir {run.artifacts_dir}`.")
    return stage1, stage2


class RunPredictor:
    """Every fold's network and SVR of one run, verified against the manifests and kept in memory.

    `emb_cache_dir` (optional) keeps embeddings of cached splits on disk, keyed by the checkpoint's
    SHA-256 and the image cache's name, so a second infer with other blend settings embeds nothing.
    It is never under the artifacts being read: those may be read-only (a Kaggle input dataset).
    """

    def __init__(self, run: RunDir, device: str = "auto", batch_size: int = 64, num_workers: int = 0,
                 emb_cache_dir: Path | None = None, features_cache_dir: Path | None = None):
        self.run, self.batch_size, self.num_workers = run, batch_size, num_workers
        self.device = pick_device(device)
        self.emb_cache_dir = emb_cache_dir
        # Frozen sources' test features do not depend on the run; by default they sit with its embeddings.
        self.features_cache_dir = features_cache_dir or emb_cache_dir
        self.stage1, self.stage2 = load_stages(run)
        # Exactly the sources fit-svr chose, in its order (a stage 2 from before the bank: tuned only).
        self.sources = [parse_source(s) for s in self.stage2.get("features", ["tuned"])]
        check_frozen_unchanged(self.sources, self.stage2.get("frozen", {}), run.run,
                               f"`python pipeline.py fit-svr --run {run.run} --artifacts-dir {run.artifacts_dir}`")
        self.folds = sorted(int(k) for k in self.stage1["folds"])
        self.img_size = int(self.stage1["model"]["img_size"])
        self.needs_meta = self.stage1["model"]["n_meta"] > 0 or self.stage2["use_meta"]
        self.models, self.svrs, self.scalers = {}, {}, {}
        for k in self.folds:
            fold1, fold2 = run.fold_dir("stage1", k), run.fold_dir("stage2", k)
            self.models[k] = load_fold_model(read_json(fold1 / "config.json")["model"], fold1 / "model.safetensors")
            digests = self.stage2["folds"][str(k)]["files"]
            self.svrs[k] = load_pickle_verified(fold2 / "svr.joblib", digests[f"fold{k}/svr.joblib"])
            scaler_key = f"fold{k}/scaler.joblib"
            self.scalers[k] = (load_pickle_verified(fold2 / "scaler.joblib", digests[scaler_key])
                               if scaler_key in digests else None)

    def heads(self, images: ImageSet, meta: np.ndarray | None = None, tta: bool = False) -> dict[str, np.ndarray]:
        """{"nn": (N,), "svr": (N,)}: each head averaged over the folds and the TTA views (flip if tta)."""
        if self.needs_meta and meta is None:
            raise ArtifactError(f"Run {self.run.run!r} was trained with the 12 metadata flags (--use-meta); "
                                f"give them for these images too.")
        pixels = images.pixels(self.img_size)
        views = [False, True] if tta else [False]
        # Frozen sources: once per view for all folds (they do not depend on the fold).
        frozen = {flip: frozen_blocks(self.sources, images, self.features_cache_dir, self.batch_size,
                                      str(self.device), flip) for flip in views}
        per_fold = [self._fold_heads(k, pixels, meta, frozen) for k in self.folds]
        return {"nn": np.mean([nn for nn, _ in per_fold], axis=0),
                "svr": np.mean([svr for _, svr in per_fold], axis=0)}

    def _embeddings(self, k: int, pixels: np.ndarray, flip: bool) -> torch.Tensor:
        weights_sha = self.stage1["folds"][str(k)]["files"][f"fold{k}/model.safetensors"]
        cache = None
        if self.emb_cache_dir is not None and isinstance(pixels, np.memmap):
            cache = embedding_cache_path(self.emb_cache_dir, k, "test", weights_sha, images_key(pixels), flip)
        return fold_embeddings(self.models[k], pixels, cache, self.batch_size, self.device, flip,
                               self.num_workers)

    @torch.inference_mode()
    def _fold_heads(self, k: int, pixels: np.ndarray, meta: np.ndarray | None,
                    frozen: dict[bool, dict[str, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
        model = self.models[k]
        meta_t = torch.from_numpy(meta) if meta is not None else None
        nn_views, svr_views = [], []
        for flip, frozen_view in frozen.items():
            emb = self._embeddings(k, pixels, flip).float()
            on = model.head.weight.device  # wherever the backbone ran: no model moves between calls
            head_meta = meta_t.to(on) if model.n_meta else None
            nn_views.append(logits_to_score(model.head_logits(emb.to(on), head_meta)).cpu().numpy())
            X = assemble(self.sources, emb, frozen_view, meta if self.stage2["use_meta"] else None)
            expected = self.stage2.get("n_features", X.shape[1])
            if X.shape[1] != expected:
                raise ArtifactError(f"Run {self.run.run!r}: the SVR input has {X.shape[1]} features here but "
                                    f"{expected} in fit-svr. Re-run fit-svr for this run.")
            X = standardize(X, self.scalers[k])
            svr_views.append(np.clip(predict_numpy(self.svrs[k], X.numpy()), 1, 100))
        return np.mean(nn_views, axis=0), np.mean(svr_views, axis=0)
