"""Frozen pretrained models of the feature bank: their weights (and hash), input size and forward pass.

Each model runs with its own timm `pretrained_cfg` mean/std (not stage 1's), in fp32 and eval mode,
on the GPU when there is one. One pass gives both the pooled embedding and the ImageNet logits, so
the bank caches both and asking for `:logits` later computes nothing (stage2_svr/bank.py). CLIP sources
(`clip:NAME=PATH`) are frozen models of the same kind, read by open_clip (stage2_svr/clip.py).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import timm
import torch
from torch import nn

from pawcore.artifacts import sha256_file
from stage1_backbone.model import Preprocess
from stage1_backbone.pretrained import create_classifier, packaged_weights_file

from .sources import Source, check_available

log = logging.getLogger(__name__)


def weights_file(source: Source) -> Path:
    return Path(source.path) if source.path or source.clip else packaged_weights_file(source.model)


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
    if source.clip:
        from .clip import input_size as clip_size

        return clip_size(source.clip_name)
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


def load_frozen(source: Source) -> nn.Module:
    """The timm model with the source's weights, classifier included when the weights have one; for a CLIP
    source, its ClipNet (same call, same outputs: embedding, logits or None)."""
    check_available(source)
    if source.clip:
        from .clip import cached_clip

        st = Path(source.path).stat()
        return cached_clip(source.clip_name, source.path, st.st_mtime_ns, st.st_size)
    return _load(source.model, source.path)


@functools.lru_cache(maxsize=4)  # one model serves its sizes, views and :logits within a process
def _load(model_name: str, path: str) -> FrozenNet:
    return FrozenNet(create_classifier(model_name, path))


def frozen_step(net: nn.Module, images: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frozen pass of `forward_batches`: (pooled embedding, class logits or None); no metadata."""
    return net(images)
