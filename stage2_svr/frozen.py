"""Features of frozen pretrained models, computed once per (model, weights, size, images) and cached.

They do not depend on the fold, so every fold, every `fit-svr` and every run in an artifacts directory
shares one file: <artifacts>/features/<model>-<size>px-<emb|logits>[-flip]-<key>.npy, the key made of
the weights' SHA-256 and the image cache's own name (split, size, source files). One pass gives both
the pooled embedding and the ImageNet logits, so asking for `:logits` later decodes and embeds nothing.

Each model runs with its own timm `pretrained_cfg` mean/std (not stage 1's), in fp32 and eval mode,
on the GPU when there is one.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from pawcore.artifacts import atomic_path, sha256_file, sha256_text
from pawcore.errors import ConfigError
from pawcore.images import images_key
from pawcore.progress import progress
from stage1_backbone.model import Preprocess
from stage1_backbone.predict import exact_fp32, pick_device
from stage1_backbone.pretrained import packaged_state_dict, packaged_weights_file

from .sources import Source, check_available

log = logging.getLogger(__name__)


def weights_file(source: Source) -> Path:
    return Path(source.path) if source.path else packaged_weights_file(source.model)


@functools.lru_cache(maxsize=32)
def _sha(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def weights_sha256(source: Source) -> str:
    """SHA-256 of the source's weights file (memoised per file version: hashing is done once per process)."""
    check_available(source)
    path = weights_file(source)
    st = path.stat()
    return _sha(str(path), st.st_mtime_ns, st.st_size)


def input_size(source: Source) -> int:
    """@SIZE if given, else the model's own pretrained_cfg input size."""
    if source.size:
        return source.size
    cfg = timm.models.get_pretrained_cfg(source.model)
    if cfg is not None and cfg.input_size:
        return int(cfg.input_size[-1])
    return int(timm.create_model(source.model, pretrained=False).pretrained_cfg["input_size"][-1])


class FrozenNet(nn.Module):
    """uint8 NHWC-batch -> (pooled embedding, class logits or None), with the model's own mean/std."""

    def __init__(self, model: nn.Module):
        super().__init__()
        cfg = timm.data.resolve_model_data_config(model)
        self.preprocess = Preprocess(cfg["mean"], cfg["std"])
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self.model.forward_features(self.preprocess(images))
        emb = self.model.forward_head(feats, pre_logits=True)
        logits = self.model.forward_head(feats) if self.model.num_classes else None
        return emb, logits


def load_frozen(source: Source) -> FrozenNet:
    """The timm model with the source's weights, classifier included when the weights have one."""
    check_available(source)
    return _load(source.model, source.path)


@functools.lru_cache(maxsize=4)  # one model serves its sizes, views and :logits within a process
def _load(model_name: str, path: str) -> FrozenNet:
    source = Source(model_name, path=path)
    state = (timm.models.load_state_dict(path, weights_only=True) if path else packaged_state_dict(model_name))
    classifier = timm.models.get_pretrained_cfg(model_name)
    head = f"{classifier.classifier if classifier else 'classifier'}.weight"
    n_classes = int(state[head].shape[0]) if head in state else 0
    model = timm.create_model(model_name, pretrained=False, num_classes=n_classes)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ConfigError(f"--features {source.spec}: the weights do not fit {source.model} "
                          f"({len(result.missing_keys)} missing tensors, e.g. {result.missing_keys[:3]}). Check that the "
                          f"file is for that model.")
    return FrozenNet(model)


def cache_path(cache_dir: Path, source: Source, pixels_key: str, flip: bool, logits: bool) -> Path:
    # "fp32": features cached before the frozen pass was plain fp32 (TF32 on GPUs) are not reused.
    key = sha256_text(f"{weights_sha256(source)}|{pixels_key}|flip={flip}|fp32")[:16]
    kind = "logits" if logits else "emb"
    name = source.model.replace("/", "_")
    return cache_dir / f"{name}-{input_size(source)}px-{kind}{'-flip' if flip else ''}-{key}.npy"


@torch.inference_mode()
def _extract(net: FrozenNet, pixels: np.ndarray, batch_size: int, device: torch.device, flip: bool,
             desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One plain-fp32 pass over the pixels: (N, D) embeddings and (N, classes) logits (None without a head)."""
    net = net.to(device)
    embs, logits = [], []
    for i in progress(range(0, len(pixels), batch_size), desc=desc):
        images = torch.from_numpy(np.array(pixels[i:i + batch_size])).permute(0, 3, 1, 2).to(device)  # a writable copy
        if flip:
            images = torch.flip(images, dims=[3])
        with exact_fp32(device):  # as for the fine-tuned source: the same features on a GPU and a CPU
            emb, logit = net(images)
        embs.append(emb.float().cpu())
        if logit is not None:
            logits.append(logit.float().cpu())
    return torch.cat(embs).numpy(), torch.cat(logits).numpy() if logits else None


def frozen_features(source: Source, pixels: np.ndarray, cache_dir: Path | None, batch_size: int = 64,
                    device: str = "auto", flip: bool = False) -> torch.Tensor:
    """(N, D) float32 CPU features of the source for pixels already at `input_size(source)`.

    Read from the cache when present; otherwise computed (embedding and logits in one pass) and both
    saved. `cache_dir=None`, or pixels that are not a cached memmap (photos held in memory), compute
    without caching.
    """
    if pixels.shape[1] != input_size(source):
        raise AssertionError(f"{source.spec}: pixels of {pixels.shape[1]} px, expected {input_size(source)}")
    cacheable = cache_dir is not None and isinstance(pixels, np.memmap)
    if cacheable:
        key = images_key(pixels)
        path = cache_path(cache_dir, source, key, flip, source.logits)
        if path.is_file():
            out = np.load(path)
            if len(out) == len(pixels):
                log.info("Frozen features cache hit: %s", path.name)
                return torch.from_numpy(out)
    emb, logits = _extract(load_frozen(source), pixels, batch_size, pick_device(device), flip,
                           desc=f"frozen {source.model} {pixels.shape[1]}px{' flip' if flip else ''}")
    if source.logits and logits is None:
        raise ConfigError(f"--features {source.spec}: the weights have no classifier, so there are no logits; "
                          f"use {source.model} (the pooled embedding) instead.")
    if cacheable:
        for is_logits, array in ((False, emb), (True, logits)):
            if array is not None:
                with atomic_path(cache_path(cache_dir, source, key, flip, is_logits)) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, array)
    return torch.from_numpy(logits if source.logits else emb)
