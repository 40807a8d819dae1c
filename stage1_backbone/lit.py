"""The Lightning wrapper: BCE-with-logits on Pawpularity/100, AdamW, warm-up + cosine, val RMSE per epoch.

Training ingredients (stage1_backbone/config.py): mixup of each training batch, a separate LR for the
head and layer-wise LR decay for the body (parameter groups), all under the one schedule. The EMA of the
weights and gradient accumulation are Lightning's own (train.py's trainer).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytorch_lightning as pl
import torch
from timm.optim import param_groups_layer_decay
from torch import nn
from torchmetrics import MeanSquaredError

from .model import PawpularityNet, logits_to_score

log = logging.getLogger(__name__)


def param_groups(model: PawpularityNet, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                 layer_decay: float = 1.0) -> list[dict]:
    """AdamW parameter groups, each with its peak LR: the body's (layer-wise decayed when layer_decay < 1)
    and the head's, head_lr_mult times --lr. The schedule scales every group's LR by the same factor.

    Layer decay uses timm's own grouping of its models' blocks (`param_groups_layer_decay`, which also
    exempts biases and norm weights from weight decay, as timm's recipes do). Without either ingredient
    it is one group, exactly the optimizer of runs made before them (their checkpoints resume).
    """
    if head_lr_mult == 1.0 and layer_decay == 1.0:
        return [{"params": list(model.parameters()), "lr": lr, "weight_decay": weight_decay}]
    if layer_decay == 1.0:
        body = [{"params": list(model.backbone.parameters()), "weight_decay": weight_decay, "lr_scale": 1.0}]
    else:
        body = param_groups_layer_decay(model.backbone, weight_decay=weight_decay, layer_decay=layer_decay)
    head = {"params": list(model.head.parameters()), "weight_decay": weight_decay, "lr_scale": head_lr_mult}
    return [{**group, "lr": lr * group["lr_scale"]} for group in [*body, head] if group["params"]]


def mixup_draw(alpha: float, seed: int, epoch: int, batch_idx: int, n: int) -> tuple[float, np.ndarray]:
    """(lam, perm) of one training batch: Beta(alpha, alpha) and a permutation of its n rows.

    A function of (seed, epoch, batch) alone, like the epoch's order and augmentations, so a resumed fold
    mixes exactly as an uninterrupted one would.
    """
    rng = np.random.default_rng([seed, epoch, batch_idx, 0x6D6978])
    return float(rng.beta(alpha, alpha)), rng.permutation(n)


def mix_batch(batch: dict, lam: float, perm: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, meta, target/100) of a batch mixed with weight lam: lam x row + (1 - lam) x row[perm].

    The same lam for images, metadata flags and targets: the mixed photo's target is the mix of the two
    targets, which is what makes mixup a regulariser rather than label noise. Images become float (the
    model's Preprocess is affine, so mixing before it equals mixing normalised images). Written here
    rather than timm's Mixup, which mixes one-hot class labels, not a BCE target on 0..1.
    """
    index = torch.as_tensor(perm, device=batch["image"].device)
    images = batch["image"].float()
    mixed = lam * images + (1 - lam) * images[index]
    meta = lam * batch["meta"] + (1 - lam) * batch["meta"][index]
    target = batch["target"] / 100.0
    return mixed, meta, lam * target + (1 - lam) * target[index]


class LitPawpularity(pl.LightningModule):
    def __init__(self, model: PawpularityNet, lr: float, weight_decay: float, warmup_epochs: float,
                 compile: bool = False, head_lr_mult: float = 1.0, layer_decay: float = 1.0, mixup: float = 0.0,
                 seed: int = 0):
        super().__init__()
        self.model = model
        if compile:  # compile the backbone in place: state-dict keys stay the same
            model.backbone.compile()
        self.lr, self.weight_decay, self.warmup_epochs = lr, weight_decay, warmup_epochs
        self.head_lr_mult, self.layer_decay, self.mixup, self.seed = head_lr_mult, layer_decay, mixup, seed
        self.total_steps = self.warmup_steps = 0  # set in configure_optimizers, once Lightning knows them
        self.loss = nn.BCEWithLogitsLoss()
        # torchmetrics syncs across ranks, so val RMSE means the same under DDP as on one device.
        self.val_rmse = MeanSquaredError(squared=False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, meta, target = batch["image"], batch["meta"], batch["target"] / 100.0
        if self.mixup > 0:  # training only: validation_step and the OOF pass see the photos as they are
            lam, perm = mixup_draw(self.mixup, self.seed, self.current_epoch, batch_idx, len(images))
            images, meta, target = mix_batch(batch, lam, perm)
        logits = self.model(images, meta)
        loss = self.loss(logits.float(), target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits),
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        score = logits_to_score(self.model(batch["image"], batch["meta"]))
        self.val_rmse(score, batch["target"])
        self.log("val_rmse", self.val_rmse, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(score))

    def configure_optimizers(self):
        """AdamW; linear warm-up, then cosine decay to 0 at the last optimizer step of this rank.

        The step count is Lightning's own `estimated_stepping_batches`: it counts the optimizer steps each
        rank runs after the loader is sharded across DDP ranks, with gradient accumulation (one step per
        --accumulate batches), so the cosine ends at 0 on 1 device or 8, with or without accumulation.
        (Counting len(train_loader) before sharding stretched it N-fold: with 2 devices the LR ended near
        half its peak.) Lightning steps a per-step scheduler only on optimizer steps. The schedule is a
        factor on every parameter group's own peak LR (head, body layers).
        """
        opt = torch.optim.AdamW(param_groups(self.model, self.lr, self.weight_decay, self.head_lr_mult,
                                             self.layer_decay), lr=self.lr, weight_decay=self.weight_decay)
        self.total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = self.total_steps / max(1, self.trainer.max_epochs)
        self.warmup_steps = min(int(self.warmup_epochs * per_epoch), self.total_steps - 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps - self.warmup_steps, eta_min=0.0)
        if self.warmup_steps == 0:
            sched = cosine
        else:
            warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / self.warmup_steps, end_factor=1.0,
                                                       total_iters=self.warmup_steps)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[self.warmup_steps])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def schedule_summary(self) -> dict:
        """What the schedule was and where it ended: recorded in done.json (tests check DDP with it)."""
        groups = self.trainer.optimizers[0].param_groups
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "steps_run": int(self.trainer.global_step), "peak_lr": self.lr,
                "final_lr": float(groups[0]["lr"]), "param_groups": len(groups)}


class EpochSummary(pl.Callback):
    """One log line per epoch: fold, epoch, train loss, val RMSE, best so far, lr, seconds."""

    def __init__(self, fold: int):
        self.fold = fold
        self.best = math.inf
        self.t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        if "val_rmse" not in m or not trainer.is_global_zero:
            return
        val = float(m["val_rmse"])
        self.best = min(self.best, val)
        log.info("fold %d  epoch %d/%d  train_loss %.4f  val_rmse %.3f  best %.3f  lr %.2e  %.0fs",
                 self.fold, trainer.current_epoch + 1, trainer.max_epochs, float(m.get("train_loss", math.nan)),
                 val, self.best, trainer.optimizers[0].param_groups[0]["lr"], time.perf_counter() - self.t0)
