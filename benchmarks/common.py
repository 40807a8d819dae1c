"""The training-speed measurement shared by run_all.py (CPU row 3) and bench_gpu.py (GPU rows): one epoch of
stage 1 through Lightning (loaders, augmentation) beside a bare forward+backward+step loop, same model."""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

BACKBONE = "tf_efficientnet_lite0"


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel("ERROR")


def bf16_autocast():
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def new_model(device: str, pretrained: str, backbone: str = BACKBONE):
    """A PawpularityNet on the CPU; for the GPU in channels_last with cudnn autotune, as stage 1 trains it there."""
    import torch

    from stage1_backbone.model import PawpularityNet
    from stage1_backbone.pretrained import create_backbone

    model = PawpularityNet(create_backbone(backbone, pretrained))
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    return model


def quiet_trainer(device: str, *callbacks, **kwargs):
    """A Lightning Trainer that only trains and times (no logger, checkpoints, bars or validation)."""
    import pytorch_lightning as pl

    hardware = {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"} if device == "cuda" else \
        {"accelerator": "cpu"}
    return pl.Trainer(**hardware, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                      callbacks=list(callbacks), **kwargs)


def clock(device: str, *hooks: str):
    """A Lightning callback whose `stamps` list gets the time (after the device has finished its work) at each
    of the named hooks, e.g. "on_train_batch_end"."""
    import pytorch_lightning as pl

    stamps: list[float] = []

    def stamp(*_) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    callback = type("Clock", (pl.Callback,), dict.fromkeys(hooks, stamp))()
    callback.stamps = stamps
    return callback


def bare_train(model, x, y, batch: int, steps: int, bf16: bool = False, warmup: int = 0) -> float:
    """Images/s of `steps` optimizer steps on tensors already on the model's device (after `warmup` steps)."""
    import torch

    device = x.device.type
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n = len(x)

    def step(i: int) -> None:
        j = (i * batch) % (n - batch + 1)
        with bf16_autocast() if bf16 else contextlib.nullcontext():
            loss = loss_fn(model(x[j:j + batch]).float(), y[j:j + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def part_train(work_file: Path, n: int, size: int, batch: int, workers: list[int], device: str,
               pretrained: str, epochs: int, warmup: int) -> tuple[float, dict[int, float]]:
    """Best of 2 (interleaved): bare loop images/s, and Lightning images/s for each loader worker count.

    The Lightning figure is the last of `epochs` epochs (on a GPU the second: workers and autotune warm);
    the bare loop runs `warmup` steps before it is timed. The pixels go through a memmap file, as stage 1
    reads its image cache.
    """
    import numpy as np
    import torch

    from stage1_backbone.config import TrainConfig
    from stage1_backbone.lit import LitPawpularity
    from stage1_backbone.train import fold_loaders

    quiet_lightning()
    work_file.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    np.save(work_file, pixels)
    cached = np.load(work_file, mmap_mode="r")
    targets = rng.uniform(1, 100, n).astype(np.float32)
    rows = np.arange(n)

    def pipeline_epochs(w: int) -> float:
        cfg = TrainConfig(batch_size=batch, num_workers=w)
        model = new_model(device, pretrained)
        train_loader, _ = fold_loaders(cfg, cached, rows, rows[:batch], targets, None, seed=0)
        lit = LitPawpularity(model, 3e-4, 1e-2, 0)
        timer = clock(device, "on_train_epoch_start", "on_train_epoch_end")
        quiet_trainer(device, timer, max_epochs=epochs).fit(lit, train_loader)
        return len(train_loader) * batch / (timer.stamps[-1] - timer.stamps[-2])

    def bare_epoch() -> float:
        model = new_model(device, pretrained).to(device).train()
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(device)
        y = torch.from_numpy(targets).to(device) / 100
        return bare_train(model, x, y, batch, n // batch, bf16=device == "cuda", warmup=warmup)

    bare, pipe = [], {w: [] for w in workers}
    for _ in range(2):  # interleaved, best of 2
        bare.append(bare_epoch())
        for w in workers:
            pipe[w].append(pipeline_epochs(w))
    return max(bare), {w: max(rates) for w, rates in pipe.items()}
