"""`pipeline.py train-backbone`: validate data, make folds, fine-tune one model per fold, write OOF + manifest.

Per fold, under artifacts/<run>/stage1/fold{k}/: model.safetensors (best epoch by val RMSE),
config.json (everything needed to rebuild the model), metrics.csv (per epoch, from Lightning's
CSVLogger), oof.csv, and done.json, written last. The stage manifest and oof_nn.csv are assembled
from every finished fold whose settings match this run.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from pawcore.artifacts import atomic_path, read_json, sha256_file, write_csv, write_json
from pawcore.config import parse_folds
from pawcore.data import ID_COL, META_COLS, read_split
from pawcore.errors import ConfigError
from pawcore.folds import load_or_make_folds
from pawcore.images import cached_images
from pawcore.metrics import fold_baselines, format_table, oof_table, rmse
from pawcore.progress import interactive
from pawcore.run import RunDir, file_digests, run_dir, write_manifest

from .config import TrainConfig
from .dataset import CachedImages, train_augmentations
from .lit import EpochSummary, LitPawpularity
from .model import PawpularityNet, save_weights
from .predict import embed_and_score
from .pretrained import create_backbone

log = logging.getLogger(__name__)
STAGE = "stage1"
# Settings every fold of one run must share for their OOF predictions to be combined.
COMPAT_KEYS = ("backbone", "img_size", "use_meta", "n_folds")


def train_backbone(cfg: TrainConfig) -> pd.DataFrame:
    """Run stage 1 and return the OOF RMSE table (per fold + overall, with the mean baseline)."""
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with train.csv and train/<Id>.jpg.")
    run = run_dir(cfg.artifacts_dir, cfg.run)
    folds_to_train = parse_folds(cfg.folds, cfg.n_folds)
    create_backbone(cfg.backbone, "none")  # fail fast on a bad --backbone, before decoding any image

    train = read_split(cfg.data_dir, "train", require_meta=cfg.use_meta)
    pixels = cached_images(train.image_paths, cfg.img_size, run.image_cache, "train")
    folds = load_or_make_folds(run.folds_csv, train.frame, cfg.n_folds, cfg.seed)
    fold_of = folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy()
    meta = train.meta() if cfg.use_meta else None

    for k in folds_to_train:
        train_fold(cfg, run, k, pixels, train.targets(), meta, train.ids, fold_of)

    table = assemble_stage(run, cfg, fold_baselines(train.targets(), fold_of))
    print(f"\nStage 1 OOF RMSE (run {cfg.run!r}, {cfg.backbone}, {cfg.img_size}px):")
    print(format_table(table))
    print(f"Artifacts: {run.stage(STAGE)}\n")
    return table


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    on_gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(text: str):
    return int(text) if str(text).isdigit() else text


def train_fold(cfg: TrainConfig, run: RunDir, k: int, pixels: np.ndarray, targets: np.ndarray,
               meta: np.ndarray | None, ids: list[str], fold_of: np.ndarray) -> None:
    fold_dir = run.fold_dir(STAGE, k)
    (fold_dir / "done.json").unlink(missing_ok=True)  # from here on this fold is unfinished
    fold_dir.mkdir(parents=True, exist_ok=True)
    train_rows, val_rows = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
    log.info("fold %d: %d train / %d val images", k, len(train_rows), len(val_rows))

    pl.seed_everything(cfg.seed + k, workers=True, verbose=False)
    n_meta = len(META_COLS) if meta is not None else 0
    model = PawpularityNet(create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file), n_meta=n_meta)
    with torch.no_grad():  # start the head at the training mean: the first steps fine-tune, not recentre
        p = float(np.clip(targets[train_rows].mean() / 100.0, 1e-3, 1 - 1e-3))
        model.head.bias.fill_(math.log(p / (1 - p)))

    workers = dict(num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                   pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(CachedImages(pixels, train_rows, targets, meta, augment=train_augmentations(cfg.seed + k)),
                              batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_rows) > cfg.batch_size,
                              **workers)
    val_loader = DataLoader(CachedImages(pixels, val_rows, targets, meta), batch_size=cfg.batch_size * 2, **workers)
    steps = len(train_loader) * cfg.epochs
    lit = LitPawpularity(model, cfg.lr, cfg.weight_decay, int(cfg.warmup_epochs * len(train_loader)), steps)

    ckpt_dir = fold_dir / "checkpoints"
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_rmse", mode="min",
                           save_top_k=1, save_weights_only=True)
    trainer = pl.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices),
        precision=_precision(cfg), deterministic=not torch.cuda.is_available(),
        callbacks=[best, EarlyStopping("val_rmse", mode="min", patience=cfg.patience), EpochSummary(k)],
        logger=CSVLogger(fold_dir, name="", version="logs"), num_sanity_val_steps=0,
        enable_progress_bar=interactive(), enable_model_summary=False,
        log_every_n_steps=max(1, min(50, len(train_loader))),
    )
    trainer.fit(lit, train_loader, val_loader)

    # The best epoch's weights: our own file, just written, but still read without unpickling code.
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({name.removeprefix("model."): t for name, t in state.items() if name.startswith("model.")})
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    _save_fold(cfg, run, k, model, pixels, targets, meta, ids, val_rows, float(best.best_model_score))


def model_config(cfg: TrainConfig, model: PawpularityNet) -> dict:
    """What a later stage needs to rebuild this fold's model and feed it, independent of today's defaults."""
    return {"backbone": cfg.backbone, "n_meta": model.n_meta, "meta_cols": META_COLS if model.n_meta else [],
            "img_size": cfg.img_size, "feature_dim": model.feature_dim,
            "mean": model.preprocess.mean.flatten().div(255).tolist(),
            "std": model.preprocess.std.flatten().div(255).tolist()}


def _save_fold(cfg: TrainConfig, run: RunDir, k: int, model: PawpularityNet, pixels: np.ndarray,
               targets: np.ndarray, meta: np.ndarray | None, ids: list[str], val_rows: np.ndarray,
               best_val_rmse: float) -> None:
    fold_dir = run.fold_dir(STAGE, k)
    _, scores = embed_and_score(model, pixels, val_rows, meta, batch_size=cfg.batch_size * 2, desc=f"oof fold {k}")
    oof = pd.DataFrame({ID_COL: np.asarray(ids)[val_rows], "fold": k, "target": targets[val_rows],
                        "pred": scores.cpu().numpy().astype(np.float64)})
    with atomic_path(fold_dir / "model.safetensors") as tmp:
        save_weights(model, tmp)
    write_json(fold_dir / "config.json", {"fold": k, "model": model_config(cfg, model),
                                          "train": dataclasses.asdict(cfg)})
    write_csv(fold_dir / "oof.csv", oof)
    files = [fold_dir / "model.safetensors", fold_dir / "config.json", fold_dir / "oof.csv"]
    write_json(fold_dir / "done.json", {
        "fold": k, "val_rmse": best_val_rmse, "oof_rmse": rmse(oof["pred"], oof["target"]),
        "compat": {key: getattr(cfg, key) for key in COMPAT_KEYS},
        "files": file_digests(run.stage(STAGE), files),
    })
    log.info("fold %d done: best val RMSE %.3f -> %s", k, best_val_rmse, fold_dir)


def assemble_stage(run: RunDir, cfg: TrainConfig, baselines: dict[str, float]) -> pd.DataFrame:
    """Combine every finished fold with this run's settings into oof_nn.csv and manifest.json."""
    stage_dir = run.stage(STAGE)
    compat = {key: getattr(cfg, key) for key in COMPAT_KEYS}
    entries, oofs = {}, []
    for done_path in sorted(stage_dir.glob("fold*/done.json")):
        done = read_json(done_path)
        if done["compat"] != compat:
            log.warning("%s was trained with %s, this run uses %s: left out. Re-train it with --folds %d.",
                        done_path.parent, done["compat"], compat, done["fold"])
            continue
        entries[str(done["fold"])] = {"files": done["files"], "val_rmse": done["val_rmse"]}
        oofs.append(pd.read_csv(done_path.parent / "oof.csv", dtype={ID_COL: str}))
    oof = pd.concat(oofs, ignore_index=True)
    write_csv(stage_dir / "oof_nn.csv", oof)
    first = read_json(stage_dir / f"fold{next(iter(entries))}" / "config.json")["model"]
    write_manifest(run, STAGE, {
        "folds": entries, "n_folds": cfg.n_folds, "data_dir": str(Path(cfg.data_dir).resolve()), "folds_csv_sha256": sha256_file(run.folds_csv),
        "oof_nn_sha256": sha256_file(stage_dir / "oof_nn.csv"), "model": first, "mean_baseline": baselines,
    })
    return oof_table(oof, {"NN head": "pred"}, baselines)
