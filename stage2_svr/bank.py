"""The feature bank: stage 2's input for one run and one set of images, the same for fit-svr, infer and score.

A source (stage2_svr/sources.py) is either `tuned`, each fold's fine-tuned stage-1 backbone (it depends
on the fold), or a frozen pretrained model (the same for every fold). The bank computes each (source,
fold, view) once per image set and keeps it; when the images have a stable identity (a split in the
image cache) it also caches it on disk, as

    <cache_dir>/<name>-<size>px-<emb|logits|prompts>[-<view>]-<key>.npy      (view: flip, zoom, crop-tl, ...)

the key made of the weights' SHA-256, the view and the image cache's own name (split, size, resize mode,
source files), so a re-trained checkpoint, other weights, another view or resize mode or changed photos
never read a stale file. A CLIP source's prompt similarities are computed from its cached image embedding
and keyed by the prompts as well. Every source, frozen ones included, sees the photos made square in the
run's resize mode (stage 1's saved config), so one photo is the same pixels in every source and stage;
CLIP sources alone see the photo's central square, as CLIP was trained (`resize_of`). Frozen
features do not depend on the run otherwise: runs with the same resize mode share them. A fold's matrix is the chosen
sources side by side, in the recorded order, then the metadata flags when the head uses them.
"""
from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pawcore.artifacts import atomic_path, sha256_text
from pawcore.errors import ArtifactError, ConfigError
from pawcore.images import ImageSet, images_key
from pawcore.views import IDENTITY
from stage1_backbone.manifest import Stage1Manifest
from stage1_backbone.model import PawpularityNet
from stage1_backbone.predict import forward_batches

from .clip import CLIP_RESIZE, prompt_features
from .frozen import frozen_step, input_size, load_frozen, weights_sha256
from .sources import TUNED, Source

log = logging.getLogger(__name__)


class FeatureBank:
    """Every source's features of one image set, for any fold of one run, each computed once.

    `fold_model(k)` gives fold k's fine-tuned network (default: loaded from stage 1's files once); a
    caller that also needs the networks (infer's NN head) passes the ones it holds. `cache_dir=None`
    keeps features in memory only.
    """

    def __init__(self, stage1: Stage1Manifest, images: ImageSet, cache_dir: Path | None, *,
                 meta: np.ndarray | None = None, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                 fold_model: Callable[[int], PawpularityNet] | None = None):
        self.stage1, self.images, self.cache_dir, self.meta = stage1, images, cache_dir, meta
        self.batch_size, self.device, self.num_workers = batch_size, device, num_workers
        self.fold_model = fold_model or cache(stage1.fold_model)
        self.resize = stage1.resize  # the run's, for every source: one photo, the same pixels everywhere
        self._pixels = cache(images.pixels)  # (size, resize mode) -> pixels, each made once
        self._memo: dict[tuple[str, int | None, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    def matrix(self, fold: int, sources: Sequence[Source], view: str = IDENTITY, with_meta: bool = False) -> np.ndarray:
        """Fold `fold`'s input of a head: the sources' features side by side (+ metadata), float32."""
        return np.concatenate(self.blocks(fold, sources, view, with_meta), axis=1)

    def blocks(self, fold: int, sources: Sequence[Source], view: str = IDENTITY,
               with_meta: bool = False) -> list[np.ndarray]:
        """The blocks `matrix` puts side by side: one per source, in order, then the metadata flags (a head
        that balances its sources scales each block on its own). `view`: a test-time view (pawcore/views.py)."""
        blocks = [self.tuned(fold, view) if s.tuned else self.frozen(s, view) for s in sources]
        if with_meta:
            if self.meta is None:
                raise ArtifactError("This stage 2 was fitted with the 12 metadata flags (--use-meta); give them "
                                    "for these images too.")
            blocks.append(np.asarray(self.meta, np.float32))
        return blocks

    def tuned(self, fold: int, view: str = IDENTITY) -> np.ndarray:
        """Fold `fold`'s fine-tuned backbone embedding (N, feature_dim): the SVR's `tuned` source and the
        NN head's input alike."""
        key = (TUNED, fold, view)
        if key not in self._memo:
            size, weights = self.stage1.img_size, self.stage1.weights_sha256(fold)
            pixels = self._pixels(size, self.resize)
            (emb,) = self._computed(f"{TUNED}-fold{fold}", size, weights, view, ("emb",), "emb",
                                    lambda: forward_batches(self.fold_model(fold), _embed_step, pixels,
                                                            batch_size=self.batch_size, device=self.device, view=view,
                                                            num_workers=self.num_workers,
                                                            desc=f"embed fold {fold}{' ' + view if view else ''}"),
                                    self.resize)
            if emb.shape[1] != self.stage1.model["feature_dim"]:
                raise ArtifactError(f"fold {fold}: embedding size {emb.shape[1]} does not match stage 1's "
                                    f"feature_dim {self.stage1.model['feature_dim']}. Re-run "
                                    f"{Stage1Manifest.remake(self.stage1.run)}.")
            self._memo[key] = emb
        return self._memo[key]

    def frozen(self, source: Source, view: str = IDENTITY) -> np.ndarray:
        """A frozen source's features (N, D): its pooled embedding, or its class logits for `:logits`, or a
        CLIP source's prompt similarities for `:prompts`."""
        if source.prompts:
            return self._prompts(source, view)
        key = (source.spec, None, view)
        if key not in self._memo:
            size = input_size(source)
            mode = self.resize_of(source)
            emb, logits = self._computed(
                _file_name(source), size, weights_sha256(source), view, ("emb", "logits"),
                "logits" if source.logits else "emb",
                lambda: forward_batches(load_frozen(source), frozen_step, self._pixels(size, mode),
                                        batch_size=self.batch_size, device=self.device, view=view,
                                        num_workers=self.num_workers,
                                        desc=f"frozen {source.model} {size}px{' ' + view if view else ''}"),
                mode)
            if source.logits and logits is None:
                raise ConfigError(f"--features {source.spec}: the weights have no classifier, so there are no "
                                  f"logits; use {source.model} (the pooled embedding) instead.")
            self._memo[key] = logits if source.logits else emb
        return self._memo[key]

    def _prompts(self, source: Source, view: str) -> np.ndarray:
        """A CLIP source's (N, n_prompts) cosine similarities, from its image embedding (computed or read
        once, shared with `clip:NAME`) and the prompts' text embeddings."""
        if not source.prompt_texts:
            raise AssertionError(f"{source.spec}: no prompts attached (sources.with_prompts)")
        key = (source.spec, source.prompt_texts, view)
        if key not in self._memo:
            emb = self.frozen(source.image_source, view)
            weights = sha256_text(f"{weights_sha256(source)}|prompts={json.dumps(source.prompt_texts)}")
            (feats,) = self._computed(_file_name(source), input_size(source), weights, view, ("prompts",), "prompts",
                                      lambda: (prompt_features(load_frozen(source), emb, source.prompt_texts),),
                                      self.resize_of(source))
            self._memo[key] = feats
        return self._memo[key]

    def frozen_record(self, sources: Sequence[Source]) -> dict[str, dict]:
        """What a manifest keeps of each frozen source: weights SHA-256, input size, feature width; for CLIP
        also its file format, mean/std and resize, and the prompts of a :prompts source."""
        record = {}
        for s in sources:
            if s.tuned:
                continue
            record[s.spec] = {"weights_sha256": weights_sha256(s), "size": input_size(s),
                              "dim": int(self.frozen(s).shape[1])}
            if s.clip:
                record[s.spec].update(load_frozen(s).record)
            if s.prompts:
                record[s.spec]["prompts"] = list(s.prompt_texts)
        return record

    def resize_of(self, source: Source) -> str:
        """How the photos are made square for a source: CLIP's own way (the central square: its shortest-side
        resize and centre crop) for a CLIP source, else the run's mode."""
        return CLIP_RESIZE if source.clip else self.resize

    def _computed(self, name: str, size: int, weights: str, view: str, kinds: tuple[str, ...], need: str,
                  compute: Callable[[], tuple[torch.Tensor | None, ...]], mode: str) -> list[np.ndarray | None]:
        """The outputs of one forward pass (one per kind) on the photos made square in `mode`, read from the
        cache when the kind `need` is there, else computed and saved."""
        paths = self._cache_files(name, size, weights, view, kinds, mode)
        if paths and paths[kinds.index(need)].is_file():
            arrays = [np.load(p) if p.is_file() else None for p in paths]
            if len(arrays[kinds.index(need)]) == len(self):
                log.info("Feature cache hit: %s", paths[kinds.index(need)].name)
                return arrays
        arrays = [None if t is None else t.numpy() for t in compute()]
        for path, array in zip(paths, arrays):
            if array is not None:
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, array)
        return arrays

    def _cache_files(self, name: str, size: int, weights: str, view: str, kinds: tuple[str, ...],
                     mode: str) -> list[Path]:
        pixels = self._pixels(size, mode)
        if self.cache_dir is None or not isinstance(pixels, np.memmap):
            return []  # photos held in memory have no stable identity
        # The photo itself and its flip keep the keys they had when the flip was the only view, so those
        # caches stay valid. "fp32": features cached before every pass was plain fp32 are not reused.
        seen_as = f"flip={view == 'flip'}" if view in (IDENTITY, "flip") else f"view={view}"
        key = sha256_text(f"{weights}|{images_key(pixels)}|{seen_as}|fp32")[:16]
        return [self.cache_dir / f"{name}-{size}px-{kind}{'-' + view if view else ''}-{key}.npy" for kind in kinds]


def _file_name(source: Source) -> str:
    """A frozen model's name as part of a cache file name (no '/' or ':')."""
    return source.model.replace("/", "_").replace(":", "-")


def _embed_step(model: PawpularityNet, images: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor]:
    return (model.embed(images),)
