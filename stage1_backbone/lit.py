"""The Lightning wrapper: BCE-with-logits on Pawpularity/100, AdamW, warm-up + cosine, val RMSE per epoch."""
from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanSquaredError

from .model import PawpularityNet, logits_to_score

log = logging.getLogger(__name__)


class LitPawpularity(pl.LightningModule):
    def __init__(self, model: PawpularityNet, lr: float, weight_decay: float, warmup_epochs: float,
                 compile: bool = False):
        super().__init__()
        self.model = model
        if compile:  # compile the backbone in place: state-dict keys stay the same
            model.backbone.compile()
        self.lr, self.weight_decay, self.warmup_epochs = lr, weight_decay, warmup_epochs
        self.total_steps = self.warmup_steps = 0  # set in configure_optimizers, once Lightning knows them
        self.loss = nn.BCEWithLogitsLoss()
        # torchmetrics syncs across ranks, so val RMSE means the same under DDP as on one device.
        self.val_rmse = MeanSquaredError(squared=False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["image"], batch["meta"])
        loss = self.loss(logits.float(), batch["target"] / 100.0)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(logits),
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        score = logits_to_score(self.model(batch["image"], batch["meta"]))
        self.val_rmse(score, batch["target"])
        self.log("val_rmse", self.val_rmse, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(score))

    def configure_optimizers(self):
        """AdamW; linear warm-up, then cosine decay to 0 at the last optimizer step of this rank.

        The step count is Lightning's own `estimated_stepping_batches`: it counts the batches each rank
        runs after the loader is sharded across DDP ranks (and gradient accumulation), so the cosine
        ends at 0 on 1 device or 8. (Counting len(train_loader) before sharding stretched it N-fold:
        with 2 devices the LR ended near half its peak.)
        """
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
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
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "steps_run": int(self.trainer.global_step), "peak_lr": self.lr,
                "final_lr": float(self.trainer.optimizers[0].param_groups[0]["lr"])}


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
