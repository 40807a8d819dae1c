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
    def __init__(self, model: PawpularityNet, lr: float, weight_decay: float, warmup_steps: int, total_steps: int,
                 compile: bool = False):
        super().__init__()
        self.model = model
        if compile:  # compile the backbone in place: state-dict keys stay the same
            model.backbone.compile()
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.total_steps = warmup_steps, max(total_steps, 1)
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
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def warmup_cosine(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
