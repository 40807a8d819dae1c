"""`pipeline.py train-backbone`: validate data, make folds, fine-tune one model per fold, write OOF + manifest.

Per fold, under artifacts/<run>/stage1/fold{k}/: model.safetensors (best epoch by val RMSE, or the last
epoch with --checkpoint last),
config.json (everything needed to rebuild the model), logs/metrics.csv (per epoch, Lightning's
CSVLogger), oof.csv, and done.json, written last. The stage manifest and oof_nn.csv are assembled
from every finished fold whose settings match this run.

Restarts: a finished fold (done.json, same settings) is skipped; an interrupted one resumes from
checkpoints/last.ckpt, written at every epoch end. Each epoch's data order and augmentations are a
function of (seed, fold, epoch), so a resumed fold ends where an uninterrupted one would.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from pawcore.artifacts import atomic_path, read_json_object, sha256_file, write_csv, write_json
from pawcore.config import parse_folds
from pawcore.data import ID_COL, META_COLS, read_split
from pawcore.errors import ArtifactError, ConfigError
from pawcore.folds import adopt_folds, load_or_make_folds
from pawcore.images import INTERPOLATION
from pawcore.locks import exclusive
from pawcore.metrics import fold_baselines, format_table, oof_table, rmse
from pawcore.progress import interactive
from pawcore.ranks import is_global_zero
from pawcore.manifest import file_digests
from pawcore.run import RunDir, run_dir
from pawcore.views import parse_tta, tta_views

from .config import MODEL_KEYS, TrainConfig
from .dataset import CachedImages, EpochSampler, train_augmentations
from .lit import EpochSummary, LitPawpularity
from .loggers import check_logger, fold_loggers
from .manifest import Stage1Fold, Stage1Manifest
from .model import PawpularityNet, save_weights
from .predict import embed_and_score
from .pretrained import check_weights_source, create_backbone, file_normalisation, parse_triple

log = logging.getLogger(__name__)
STAGE = Stage1Manifest.STAGE
LAYOUT = Stage1Manifest  # where each of the stage's files goes
# Settings every fold of one run must share for their OOF predictions to be combined, and for the manifest's
# one model record (the first fold's) to say how every fold is fed (the resize mode, the test-time views).
COMPAT_KEYS = ("backbone", "img_size", "use_meta", "n_folds", "resize", "tta")


def _settings(values: dict, keys: tuple[str, ...]) -> dict:
    # A key missing from an older done.json had its default then: such folds stay finished.
    return {key: values.get(key, getattr(TrainConfig, key)) for key in keys}


def model_settings(cfg: TrainConfig | dict) -> dict:
    return _settings(cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg), MODEL_KEYS)


def train_backbone(cfg: TrainConfig) -> pd.DataFrame | None:
    """Run stage 1 and return the OOF RMSE table (per fold + overall, with the mean baseline)."""
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with train.csv and train/<Id>.jpg.")
    run = run_dir(cfg.artifacts_dir, cfg.run)
    folds_to_train = parse_folds(cfg.folds, cfg.n_folds)
    check_weights_source(cfg.backbone, cfg.pretrained, cfg.pretrained_file)  # before decoding any image
    check_logger(cfg.logger)
    if cfg.folds_from:  # shared folds: runs that can be ensembled (infer --runs)
        adopt_folds(run_dir(cfg.artifacts_dir, cfg.folds_from).folds_csv, run.folds_csv, cfg.folds_from)
    normalisation(cfg)  # a bad --mean/--std stops here, before any image is decoded

    train = read_split(cfg.data_dir, "train", require_meta=cfg.use_meta)
    pixels = train.pixels(cfg.img_size, run.image_cache, cfg.resize)
    folds = load_or_make_folds(run.folds_csv, train.frame, cfg.n_folds, cfg.seed)
    fold_of = folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy()
    meta = train.meta() if cfg.use_meta else None

    with contextlib.ExitStack() as locks:
        if is_global_zero():  # other ranks follow rank 0; they never write
            for k in folds_to_train:
                locks.enter_context(exclusive(LAYOUT.lock_file(run, k), f"{STAGE} fold {k} of run {cfg.run!r}"))
        for k in folds_to_train:
            if fold_finished(run, k, cfg):
                log.info("fold %d: already finished with these settings, skipped (delete %s to retrain)",
                         k, LAYOUT.fold_dir(run, k))
                continue
            train_fold(cfg, run, k, pixels, train.targets(), meta, train.ids, fold_of)

    if not is_global_zero():
        return None
    table = assemble_stage(run, cfg, fold_baselines(train.targets(), fold_of))
    print(f"\nStage 1 OOF RMSE (run {cfg.run!r}, {cfg.backbone}, {cfg.img_size}px):")
    print(format_table(table))
    print(f"Artifacts: {LAYOUT.stage_dir(run)}\n")
    return table


def normalisation(cfg: TrainConfig) -> tuple[list[float] | None, list[float] | None]:
    """(mean, std) for the model: --mean/--std, else the weights file's pretrained_cfg, else None (timm's)."""
    mean, std = parse_triple(cfg.mean, "--mean"), parse_triple(cfg.std, "--std")
    from_file = file_normalisation(cfg.pretrained_file) if mean is None or std is None else None
    if from_file is not None:
        mean, std = mean or from_file[0], std or from_file[1]
    return mean, std


def fold_finished(run: RunDir, k: int, cfg: TrainConfig) -> bool:
    done = LAYOUT.done_file(run, k)
    return done.is_file() and model_settings(_fold_json(run, done, "train")) == model_settings(cfg)


def _retrain(run: RunDir, fold_file) -> str:
    return (f"`python pipeline.py train-backbone --run {run.run} --artifacts-dir {run.artifacts_dir} --folds "
            f"{fold_file.parent.name.removeprefix('fold')}` after deleting {fold_file.parent}")


def _fold_json(run: RunDir, path, key: str):
    """`key` of a fold's done.json or config.json; a damaged file is an ArtifactError naming the fix."""
    return read_json_object(path, _retrain(run, path), (key,))[key]


def _on_gpu(cfg: TrainConfig) -> bool:
    return torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if not _on_gpu(cfg):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(text: str):
    return int(text) if str(text).isdigit() else text


def _resume_checkpoint(run: RunDir, k: int, cfg: TrainConfig) -> str | None:
    """checkpoints/last.ckpt of an interrupted run of this fold with the same settings, if any."""
    fold_dir, config = LAYOUT.fold_dir(run, k), LAYOUT.fold_config_file(run, k)
    last = LAYOUT.last_checkpoint(run, k)
    if last.is_file() and config.is_file() and model_settings(_fold_json(run, config, "train")) == model_settings(cfg):
        log.info("fold %s: resuming from %s", fold_dir.name, last)
        return str(last)
    return None


def train_fold(cfg: TrainConfig, run: RunDir, k: int, pixels: np.ndarray, targets: np.ndarray,
               meta: np.ndarray | None, ids: list[str], fold_of: np.ndarray) -> None:
    fold_dir = LAYOUT.fold_dir(run, k)
    train_rows, val_rows = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
    log.info("fold %d: %d train / %d val images", k, len(train_rows), len(val_rows))
    seed = cfg.seed * 1000 + k
    pl.seed_everything(seed, workers=True, verbose=False)
    model = _fold_model(cfg, meta, targets[train_rows])
    resume = _resume_checkpoint(run, k, cfg)
    if is_global_zero():
        LAYOUT.done_file(run, k).unlink(missing_ok=True)  # from here on this fold is unfinished
        if resume is None:
            for name in ("checkpoints", "logs", "tensorboard"):
                shutil.rmtree(fold_dir / name, ignore_errors=True)
        write_json(LAYOUT.fold_config_file(run, k), fold_config(cfg, k, model))

    train_loader, val_loader = fold_loaders(cfg, pixels, train_rows, val_rows, targets, meta, seed)
    lit = LitPawpularity(model, cfg.lr, cfg.weight_decay, cfg.warmup_epochs, compile=cfg.compile,
                         head_lr_mult=cfg.head_lr_mult, layer_decay=cfg.layer_decay, mixup=cfg.mixup, seed=seed)
    trainer, best = _trainer(cfg, run, k, len(train_loader))
    history = _read_history(fold_dir) if resume else None  # CSVLogger starts a new file on resume
    trainer.fit(lit, train_loader, val_loader, ckpt_path=resume)
    if not trainer.is_global_zero:
        return
    if history is not None:
        _prepend_history(fold_dir, history)

    if not best.best_model_path:
        raise ConfigError(f"fold {k}: training ran no validation epoch (no training batches?); "
                          f"{len(train_rows)} training images with --batch-size {cfg.batch_size}. Lower --batch-size.")
    if cfg.checkpoint == "best":
        # The best epoch's weights (with --ema, the average's: Lightning's EMA callback puts it in the
        # checkpoint's state_dict): our own file, just written, but still read without unpickling code.
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict({name.removeprefix("model."): t for name, t in state.items() if name.startswith("model.")})
        val_rmse = float(best.best_model_score)
    else:  # the weights in memory are the last epoch's (with --ema, the average: copied in at the end)
        val_rmse = float(trainer.callback_metrics["val_rmse"])
    _save_fold(cfg, run, k, model.to(memory_format=torch.contiguous_format), pixels, targets, meta, ids, val_rows,
               val_rmse, lit.schedule_summary())
    shutil.rmtree(fold_dir / "checkpoints", ignore_errors=True)


def _fold_model(cfg: TrainConfig, meta: np.ndarray | None, train_targets: np.ndarray) -> PawpularityNet:
    """A fresh fold network: pretrained backbone, head (+ metadata) starting at the training mean."""
    mean, std = normalisation(cfg)
    model = PawpularityNet(create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file, img_size=cfg.img_size),
                           n_meta=len(META_COLS) if meta is not None else 0, mean=mean, std=std)
    with torch.no_grad():  # start the head at the training mean: the first steps fine-tune, not recentre
        p = float(np.clip(train_targets.mean() / 100.0, 1e-3, 1 - 1e-3))
        model.head.bias.fill_(math.log(p / (1 - p)))
    if _on_gpu(cfg):
        model = model.to(memory_format=torch.channels_last)  # faster convolutions on tensor cores
        torch.backends.cudnn.benchmark = True
    return model


def _trainer(cfg: TrainConfig, run: RunDir, k: int, n_batches: int) -> tuple[pl.Trainer, ModelCheckpoint]:
    """Fold k's Lightning trainer and its best-epoch checkpoint callback."""
    fold_dir = LAYOUT.fold_dir(run, k)
    # With --ema the best checkpoint is a full one: Lightning's EMA callback swaps the average into the
    # checkpoint's state_dict only when it writes callback state (a weights-only file holds the raw weights,
    # not the validated ones).
    best = ModelCheckpoint(dirpath=fold_dir / "checkpoints", filename="best", monitor="val_rmse", mode="min",
                           save_top_k=1, save_weights_only=not cfg.ema, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=fold_dir / "checkpoints", filename="last", save_top_k=1, monitor=None,
                           enable_version_counter=False)  # full state (optimizer, epoch) for resuming
    # Early stopping picks the stopping epoch on the validation fold too: only with --checkpoint best.
    stopping = [EarlyStopping("val_rmse", mode="min", patience=cfg.patience)] if cfg.checkpoint == "best" else []
    trainer = pl.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=_precision(cfg), deterministic=not torch.cuda.is_available(),
        accumulate_grad_batches=cfg.accumulate, callbacks=[*weight_averaging(cfg), best, last, *stopping, EpochSummary(k)],
        logger=fold_loggers(cfg.logger, fold_dir, cfg.run, k), num_sanity_val_steps=0,
        enable_progress_bar=interactive(), enable_model_summary=False,
        log_every_n_steps=max(1, min(50, n_batches)),
    )
    return trainer, best


def weight_averaging(cfg: TrainConfig) -> list[pl.Callback]:
    """--ema: Lightning's EMA of the weights, updated after every optimizer step. It swaps the average in
    for validation (so the epoch choice and early stopping judge it), writes it as the checkpoints'
    state_dict (the raw weights and the average both, so a resumed fold restores both) and copies it into
    the model when training ends."""
    return [EMAWeightAveraging(decay=cfg.ema)] if cfg.ema else []


def fold_loaders(cfg: TrainConfig, pixels: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
                 targets: np.ndarray, meta: np.ndarray | None, seed: int) -> tuple[DataLoader, DataLoader]:
    """The training loader (augmented, seeded by epoch) and the validation loader of one fold."""
    n_workers = cfg.num_workers if cfg.num_workers >= 0 else (min(16, os.cpu_count() or 1) if _on_gpu(cfg) else 0)
    workers = dict(num_workers=n_workers, persistent_workers=n_workers > 0, pin_memory=_on_gpu(cfg))
    train_set = CachedImages(pixels, train_rows, targets, meta, augment=train_augmentations(seed), seed=seed)
    # Drop the last partial batch on real data (steadier BatchNorm statistics) and always when it would
    # hold one image (BatchNorm cannot train on one); keep it on tiny data, where DDP splits the rows.
    drop_last = len(train_rows) >= 4 * cfg.batch_size or len(train_rows) % cfg.batch_size == 1
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=EpochSampler(len(train_rows), seed),
                              drop_last=drop_last, **workers)
    val_loader = DataLoader(CachedImages(pixels, val_rows, targets, meta), batch_size=cfg.batch_size * 2, **workers)
    return train_loader, val_loader


def _read_history(fold_dir) -> pd.DataFrame | None:
    path = fold_dir / "logs" / "metrics.csv"
    return pd.read_csv(path) if path.is_file() else None


def _prepend_history(fold_dir, before: pd.DataFrame) -> None:
    """Per-epoch metrics of the epochs before a resume, followed by those after it."""
    path = fold_dir / "logs" / "metrics.csv"
    after = pd.read_csv(path)
    before = before[before["epoch"] < after["epoch"].min()]
    write_csv(path, pd.concat([before, after], ignore_index=True))


def fold_config(cfg: TrainConfig, k: int, model: PawpularityNet) -> dict:
    """What a later stage needs to rebuild this fold's model and feed it, independent of today's defaults."""
    return {"fold": k, "train": dataclasses.asdict(cfg), "model": {
        "backbone": cfg.backbone, "n_meta": model.n_meta, "meta_cols": META_COLS if model.n_meta else [],
        "img_size": cfg.img_size, "input_size": [3, cfg.img_size, cfg.img_size], "interpolation": INTERPOLATION,
        "resize": cfg.resize, "tta": list(parse_tta(cfg.tta)), "feature_dim": model.feature_dim,
        "mean": model.preprocess.mean.flatten().div(255).tolist(),
        "std": model.preprocess.std.flatten().div(255).tolist()}}


def _save_fold(cfg: TrainConfig, run: RunDir, k: int, model: PawpularityNet, pixels: np.ndarray,
               targets: np.ndarray, meta: np.ndarray | None, ids: list[str], val_rows: np.ndarray,
               val_rmse: float, schedule: dict) -> None:
    # The NN head's OOF averaged over the run's test-time views, as infer will score the test photos.
    scores = np.mean([embed_and_score(model, pixels, val_rows, meta, batch_size=cfg.batch_size * 2, view=view,
                                      desc=f"oof fold {k}{' ' + view if view else ''}")[1].cpu().numpy()
                      for view in tta_views(parse_tta(cfg.tta))], axis=0)
    oof = pd.DataFrame({ID_COL: np.asarray(ids)[val_rows], "fold": k, "target": targets[val_rows],
                        "pred": scores.astype(np.float64)})
    with atomic_path(LAYOUT.weights_file(run, k)) as tmp:
        save_weights(model, tmp)
    write_csv(LAYOUT.fold_oof_file(run, k), oof)
    files = [LAYOUT.weights_file(run, k), LAYOUT.fold_config_file(run, k), LAYOUT.fold_oof_file(run, k)]
    write_json(LAYOUT.done_file(run, k), {
        "fold": k, "val_rmse": val_rmse, "oof_rmse": rmse(oof["pred"], oof["target"]), "checkpoint": cfg.checkpoint,
        "compat": _settings(dataclasses.asdict(cfg), COMPAT_KEYS), "train": dataclasses.asdict(cfg),
        "files": file_digests(LAYOUT.stage_dir(run), files), "lr_schedule": schedule,
    })
    log.info("fold %d done: %s epoch's val RMSE %.3f -> %s", k, cfg.checkpoint, val_rmse, LAYOUT.fold_dir(run, k))


def assemble_stage(run: RunDir, cfg: TrainConfig, baselines: dict[str, float]) -> pd.DataFrame:
    """Combine every finished fold with this run's settings into oof_nn.csv and manifest.json.

    Serialised by a lock, so parallel fold jobs each see every fold finished before their turn: the
    job that assembles last writes a manifest with all of them.
    """
    stage_dir = LAYOUT.stage_dir(run)
    with exclusive(stage_dir / ".assemble.lock", f"{STAGE} manifest of run {cfg.run!r}", wait=True):
        finished = _finished_folds(run, cfg)
        oof = pd.concat([pd.read_csv(LAYOUT.fold_oof_file(run, k), dtype={ID_COL: str}) for k in finished],
                        ignore_index=True)
        write_csv(LAYOUT.oof_file(run), oof)
        missing = sorted(set(range(cfg.n_folds)) - set(finished))
        if missing:
            log.warning("Stage 1 has %d of %d folds; folds %s are not trained yet (later stages use the ones "
                        "present).", len(finished), cfg.n_folds, missing)
        Stage1Manifest(
            run, folds=finished, n_folds=cfg.n_folds, complete=not missing,
            data_dir=str(os.path.abspath(cfg.data_dir)), folds_csv_sha256=sha256_file(run.folds_csv),
            oof_nn_sha256=sha256_file(LAYOUT.oof_file(run)),
            model=_fold_json(run, LAYOUT.fold_config_file(run, min(finished)), "model"), mean_baseline=baselines,
            checkpoint=",".join(sorted({f.checkpoint for f in finished.values()})), folds_from=cfg.folds_from or None,
        ).write()
    return oof_table(oof, {"NN head": "pred"}, baselines)


def _finished_folds(run: RunDir, cfg: TrainConfig) -> dict[int, Stage1Fold]:
    """Every fold whose done.json says it was trained with settings compatible with this run."""
    compat = _settings(dataclasses.asdict(cfg), COMPAT_KEYS)
    finished = {}
    for done_path in sorted(LAYOUT.stage_dir(run).glob("fold*/done.json")):
        done = read_json_object(done_path, _retrain(run, done_path), ("compat", "fold", "files", "val_rmse"))
        if _settings(done["compat"], COMPAT_KEYS) != compat:
            log.warning("%s was trained with %s, this run uses %s: left out. Re-train it with --folds %d.",
                        done_path.parent, done["compat"], compat, done["fold"])
            continue
        finished[int(done["fold"])] = Stage1Fold(done["files"], done["val_rmse"], done.get("checkpoint", "best"))
    if not finished:
        raise ArtifactError(f"No finished fold of run {cfg.run!r} in {LAYOUT.stage_dir(run)} was trained with "
                            f"{compat}, so there is no stage 1 to assemble. Train folds with these settings "
                            f"(train-backbone --run {cfg.run} --folds ...), or use another --run.")
    return finished
