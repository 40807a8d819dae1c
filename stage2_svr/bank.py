"""The SVR's input from its sources, built the same way by `fit-svr` (training rows) and `infer` (test photos).

Frozen sources are computed once for an image set (they do not depend on the fold); the `tuned`
source is each fold's own backbone embedding. A fold's matrix is the chosen sources side by side, in
the recorded order, then the metadata flags when --use-meta.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pawcore.errors import ArtifactError, ConfigError

from .frozen import frozen_features, input_size, weights_sha256
from .sources import Source


class ImageSet(Protocol):
    """Images a model can read at any square size: (N, size, size, 3) uint8, RGB, upright."""

    def __len__(self) -> int: ...

    def pixels(self, size: int) -> np.ndarray: ...


def frozen_blocks(sources: list[Source], images: ImageSet, cache_dir: Path | None, batch_size: int = 64,
                  device: str = "auto", flip: bool = False) -> dict[str, torch.Tensor]:
    """{spec: (N, D) CPU float32} for every frozen source: one pass per (model, size), shared by all folds."""
    return {s.spec: frozen_features(s, images.pixels(input_size(s)), cache_dir, batch_size, device, flip)
            for s in sources if not s.tuned}


def assemble(sources: list[Source], tuned: torch.Tensor | None, frozen: dict[str, torch.Tensor],
             meta: np.ndarray | None = None) -> torch.Tensor:
    """One fold's SVR input: the sources' features side by side in the given order (+ metadata), CPU float32."""
    blocks = []
    for s in sources:
        if s.tuned:
            assert tuned is not None, "the tuned source needs the fold's embeddings"
            blocks.append(tuned.float().cpu())
        else:
            blocks.append(frozen[s.spec].float().cpu())
    if meta is not None:
        blocks.append(torch.from_numpy(np.asarray(meta, np.float32)))
    return torch.cat(blocks, dim=1)


def frozen_record(sources: list[Source], frozen: dict[str, torch.Tensor]) -> dict[str, dict]:
    """What the manifest keeps of each frozen source: weights SHA-256, input size, feature width."""
    return {s.spec: {"weights_sha256": weights_sha256(s), "size": input_size(s), "dim": int(frozen[s.spec].shape[1])}
            for s in sources if not s.tuned}


def check_frozen_unchanged(sources: list[Source], record: dict[str, dict], run_name: str, refit: str) -> None:
    """Refuse a stage 2 whose frozen source is missing here or has other weights than it was fitted on."""
    for s in sources:
        if s.tuned:
            continue
        try:
            sha = weights_sha256(s)
        except ConfigError as e:
            raise ArtifactError(f"Stage 2 of run {run_name!r} was fitted on the frozen source {s.spec!r}, which "
                                f"is not available here: {e} Or re-fit stage 2 without it: {refit}.") from None
        if sha != record[s.spec]["weights_sha256"]:
            raise ArtifactError(f"Stage 2 of run {run_name!r} was fitted on {s.spec!r} with weights "
                                f"{record[s.spec]['weights_sha256'][:12]}..., but the weights here are "
                                f"{sha[:12]}... (another version). Install the version it was fitted with, "
                                f"or re-fit: {refit}.")
