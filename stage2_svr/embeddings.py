"""Frozen embeddings of a fold's backbone, cached as .npy keyed by the checkpoint's SHA-256.

A second `fit-svr` with other SVR settings re-uses them; a re-trained checkpoint (new hash) or changed
images (new image-cache key) give a new key, so stale embeddings are never read.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pawcore.artifacts import atomic_path, sha256_text
from stage1_backbone.model import PawpularityNet
from stage1_backbone.predict import embed_and_score

log = logging.getLogger(__name__)


def embedding_cache_path(cache_dir: Path, fold: int, split: str, weights_sha256: str, images_key: str,
                         flip: bool) -> Path:
    # "fp32": caches made before features were fp32 everywhere (bf16 on GPUs) are not reused.
    key = sha256_text(f"{weights_sha256}|{images_key}|flip={flip}|fp32")[:16]
    return cache_dir / f"fold{fold}-{split}{'-flip' if flip else ''}-{key}.npy"


def fold_embeddings(model: PawpularityNet, pixels: np.ndarray, cache_path: Path | None, batch_size: int = 64,
                    device: str = "auto", flip: bool = False, num_workers: int = 0) -> torch.Tensor:
    """(N, D) float32 embeddings of every cached image, from the cache file or computed and saved.

    `cache_path=None` computes without caching (photos held in memory have no stable identity).

    Freshly computed embeddings stay on the extraction device (a CUDA tensor can go to cuML through
    DLPack without a host round trip); cached ones come back as a CPU tensor.
    """
    if cache_path is not None and cache_path.is_file():
        emb = np.load(cache_path)
        if len(emb) == len(pixels):
            log.info("Embedding cache hit: %s", cache_path)
            return torch.from_numpy(emb)
    emb, _ = embed_and_score(model, pixels, batch_size=batch_size, device=device, flip=flip,
                             num_workers=num_workers, desc=f"embed {cache_path.stem if cache_path else len(pixels)}")
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb.cpu().numpy())
    return emb
