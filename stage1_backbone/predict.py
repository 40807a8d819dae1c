"""The one eval-mode inference loop over cached images, and its use by a fold model: embeddings and NN scores."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pawcore.progress import progress
from pawcore.views import CROP_SHARE, IDENTITY

from .dataset import CachedImages
from .model import PawpularityNet, logits_to_score


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """Plain fp32 maths on any device: no autocast, no TF32 convolutions or matmuls.

    The SVR is fitted on these features on one machine (often a GPU) and applied to test features
    computed on another (often a CPU). Under bf16 autocast a GPU's features differed from a CPU's by
    0.019 (H100); TF32, on by default for cuDNN convolutions, also rounds to 10 mantissa bits. So the
    pass that feeds the SVR (and the NN head's OOF and test scores) is full fp32 everywhere.
    """
    matmul = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device.type, enabled=False), \
                torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)


def view_batch(images: torch.Tensor, view: str) -> torch.Tensor:
    """A test-time view (pawcore/views.py) of a uint8 NCHW batch, uint8 NCHW of the same size.

    Made from the model's square input, on its device, so every stage that has the same pixels has the
    same view. Crops are scaled back up bilinearly and rounded to uint8: the model sees pixels, as from
    the image cache, and the GPU's and CPU's views agree but for rare rounding ties.
    """
    if view == IDENTITY:
        return images
    if view == "flip":
        return torch.flip(images, dims=[3])
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * CROP_SHARE)), max(1, round(w * CROP_SHARE))
    corners = {"zoom": ((h - ch) // 2, (w - cw) // 2), "crop-tl": (0, 0), "crop-tr": (0, w - cw),
               "crop-bl": (h - ch, 0), "crop-br": (h - ch, w - cw)}
    if view not in corners:
        raise ValueError(f"unknown test-time view {view!r}; known: flip, {', '.join(corners)}")
    y0, x0 = corners[view]
    crop = images[..., y0:y0 + ch, x0:x0 + cw].float()
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)


Step = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], tuple["torch.Tensor | None", ...]]


@torch.inference_mode()
def forward_batches(model: nn.Module, step: Step, pixels: np.ndarray, rows: np.ndarray | None = None,
                    meta: np.ndarray | None = None, batch_size: int = 64, device: str | torch.device = "auto",
                    view: str = IDENTITY, num_workers: int = 0, desc: str = "forward") -> tuple[torch.Tensor | None, ...]:
    """`step(model, images, meta)` over the cached images in batches, each output concatenated (CPU float32).

    The one inference loop of every model here (fine-tuned folds, frozen feature models): eval mode, no
    augmentation, full fp32 (see `exact_fp32`) on any device, so features agree between the machine that
    fits the SVR and the one that infers. `images` are uint8 NCHW; `view` names a test-time view
    (`view_batch`; "" = the images as they are). A step output that is None stays None.
    """
    device = pick_device(device) if isinstance(device, str) else device
    model = model.eval().to(device)
    rows = np.arange(len(pixels)) if rows is None else np.asarray(rows)
    if num_workers > 0:  # worker processes read in parallel: for caches on slow (network) filesystems
        loader = DataLoader(CachedImages(pixels, rows, meta=meta), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, pin_memory=device.type == "cuda")
    else:
        loader = _slices(pixels, rows, meta, batch_size, pin=device.type == "cuda")
    outputs = []
    for batch in progress(loader, desc=desc):
        images = batch["image"].to(device, non_blocking=True).contiguous()  # NCHW, as the per-item path stacks
        images = view_batch(images, view)
        with exact_fp32(device):
            out = step(model, images, batch["meta"].to(device))
        outputs.append(out)  # left on the device: no wait for the GPU between batches
    return tuple(None if parts[0] is None else torch.cat(parts).float().cpu() for parts in zip(*outputs))


def _embed_and_score(model: PawpularityNet, images: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    emb = model.embed(images)
    return emb, logits_to_score(model.head_logits(emb, meta if model.n_meta else None))


def embed_and_score(model: PawpularityNet, pixels: np.ndarray, rows: np.ndarray | None = None,
                    meta: np.ndarray | None = None, batch_size: int = 64, device: str | torch.device = "auto",
                    view: str = IDENTITY, num_workers: int = 0, desc: str = "embed") -> tuple[torch.Tensor, torch.Tensor]:
    """A fold model's pooled embeddings (N, D) and NN scores (N,) on 0..100, CPU float32."""
    emb, scores = forward_batches(model, _embed_and_score, pixels, rows, meta, batch_size, device, view,
                                  num_workers, desc)
    return emb, scores


def _slices(pixels: np.ndarray, rows: np.ndarray, meta: np.ndarray | None, batch_size: int, pin: bool):
    """Batches as one copy each out of the memmap (no per-image Dataset items, no collate).

    On a GPU the per-item path fed the model at 0.66 of its bare speed (benchmarks/RESULTS.md, GPU
    section); a contiguous slice, pinned, then copied without blocking, keeps it busy while the
    next batch is read.
    """
    contiguous = len(rows) > 0 and bool(np.all(np.diff(rows) == 1))
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        block = pixels[chunk[0]:chunk[-1] + 1] if contiguous else pixels[chunk]
        # The cache is a read-only memmap: a slice of it is a read-only view, which torch.from_numpy warns
        # about; np.require copies only such a view (a fancy-indexed block is already a fresh array).
        images = torch.from_numpy(np.require(block, requirements=["C", "W"])).permute(0, 3, 1, 2)
        yield {"image": images.pin_memory() if pin else images,
               "meta": torch.from_numpy(meta[chunk]) if meta is not None else torch.zeros(len(chunk), 0)}
