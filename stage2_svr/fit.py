"""`pipeline.py fit-svr`: features of the chosen sources -> (scaler) -> SVR per fold on train rows -> OOF.

Sources (stage2_svr/sources.py): each fold's fine-tuned backbone (`tuned`) and frozen pretrained
models. Frozen features are computed once for all folds (stage2_svr/frozen.py); the set of sources
and the scaler are chosen on OOF RMSE by greedy forward selection (stage2_svr/selection.py).

Reads only the artifacts of stage 1 (checked against its manifest first) and the training images.
Writes artifacts/<run>/stage2/fold{k}/{svr.joblib, scaler.joblib, config.json, oof.csv},
stage2/oof_svr.csv, stage2/selection.csv, the embedding cache stage2/emb/, the shared frozen-feature
cache <artifacts>/features/, and stage2/manifest.json last (it records the chosen sources).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import joblib
import numpy as np
import pandas as pd
import torch

from pawcore.artifacts import atomic_path, read_json, sha256_file, write_csv, write_json
from pawcore.data import ID_COL, read_split
from pawcore.errors import ArtifactError
from pawcore.folds import read_trained_folds
from pawcore.locks import exclusive
from pawcore.images import SplitImages, images_key
from pawcore.metrics import format_table, oof_table
from pawcore.oof import merge_oof
from pawcore.run import RunDir, file_digests, load_manifest, manifest_digest, run_dir, write_manifest
from stage1_backbone.completeness import check_complete
from stage1_backbone.model import load_fold_model

from .backends import portable, resolve_backend
from .bank import assemble, frozen_blocks, frozen_record
from .config import SVRConfig
from .embeddings import embedding_cache_path, fold_embeddings
from .selection import SVRParams, fit_fold, format_selection, forward_select
from .sources import check_available, parse_sources

log = logging.getLogger(__name__)
STAGE = "stage2"


def fit_svr(cfg: SVRConfig) -> pd.DataFrame:
    """Run stage 2 and return the OOF RMSE table (mean baseline, NN, SVR, 50/50 blend)."""
    run = run_dir(cfg.artifacts_dir, cfg.run)
    if not run.manifest_path("stage1").is_file():
        load_manifest(run, "stage1")  # raises, naming the command to run
    with exclusive(run.stage(STAGE) / ".lock", f"{STAGE} of run {cfg.run!r}"):
        return _fit_svr(cfg, run)


def resolve_frozen_size(cfg: SVRConfig, stage1_size: int) -> int | None:
    """--frozen-size -> pixels for frozen models named without @SIZE (None: each model's own)."""
    if cfg.frozen_size == "native":
        return None
    if cfg.frozen_size == "stage1":
        return int(stage1_size)
    return int(cfg.frozen_size)  # a number of pixels: SVRConfig checked it


def _fit_svr(cfg: SVRConfig, run: RunDir) -> pd.DataFrame:
    stage1 = load_manifest(run, "stage1")  # before any work: missing/changed stage 1 stops here
    folds = read_trained_folds(run.folds_csv, stage1, run.run)
    partial = check_complete(run, stage1, cfg.allow_partial, "fit-svr")
    backend = resolve_backend(cfg.svr_backend)
    data_dir = cfg.data_dir or stage1["data_dir"]
    model_cfg = stage1["model"]
    sources = parse_sources(cfg.features, resolve_frozen_size(cfg, model_cfg["img_size"]))
    for source in sources:
        check_available(source)  # missing weights stop here, before any image is decoded
    run.manifest_path(STAGE).unlink(missing_ok=True)  # until the new one is written, stage 2 is unfinished

    train = read_split(data_dir, "train", require_meta=cfg.use_meta)
    pixels = train.pixels(model_cfg["img_size"], run.image_cache)
    images = SplitImages(train.image_paths, run.image_cache, "train")
    fold_of = folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy()
    targets = train.targets()
    meta = train.meta() if cfg.use_meta else None
    stage_dir = run.stage(STAGE)
    fold_ids = sorted(int(k) for k in stage1["folds"])
    log.info("SVR backend: %s; feature sources: %s", backend, ", ".join(s.spec for s in sources))

    # Frozen sources: once for all folds, cached under <artifacts>/features/ for every run.
    t0 = time.perf_counter()
    frozen = frozen_blocks(sources, images, run.artifacts_dir / "features", cfg.batch_size, cfg.device)
    tuned: dict[int, torch.Tensor] = {}
    weights: dict[int, str] = {}
    for k in fold_ids:
        weights[k] = stage1["folds"][str(k)]["files"][f"fold{k}/model.safetensors"]
        if any(s.tuned for s in sources):
            tuned[k] = _tuned_embeddings(cfg, run, stage1, k, weights[k], pixels, stage_dir)
    log.info("Features of %d sources ready in %.1fs", len(sources), time.perf_counter() - t0)

    by_spec = {s.spec: s for s in sources}

    def matrix(names: tuple[str, ...], k: int) -> torch.Tensor:
        return assemble([by_spec[n] for n in names], tuned.get(k), frozen, meta)

    params = SVRParams(backend, cfg.kernel, cfg.C, cfg.epsilon, cfg.gamma)
    selection_csv = stage_dir / "selection.csv"
    if cfg.select == "none":
        chosen, scale = [s.spec for s in sources], cfg.standardize
        selection_csv.unlink(missing_ok=True)
    else:
        scalers = (False, True) if cfg.select == "auto" else (cfg.standardize,)
        log.info("Forward selection over %d sources on OOF RMSE (scaler %s):", len(sources),
                 "off/on" if len(scalers) == 2 else "on" if cfg.standardize else "off")
        picked = forward_select([s.spec for s in sources], matrix, fold_of, targets, params, scalers, fold_ids)
        chosen, scale = picked.sources, picked.standardize
        write_csv(selection_csv, picked.table)
        print(f"\nFeature selection on OOF (SVR C={cfg.C:g}; the chosen set's OOF RMSE is slightly optimistic: it "
              f"was chosen on these rows):")
        print(format_selection(picked.table))
    chosen_sources = [by_spec[n] for n in chosen]

    entries, oofs = {}, []
    for k in fold_ids:
        X = matrix(tuple(chosen), k)
        tr, va = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        t0 = time.perf_counter()
        svr, scaler, pred = fit_fold(X, tr, va, targets, params, scale)
        log.info("fold %d: SVR fitted on %d x %d in %.1fs", k, len(tr), X.shape[1], time.perf_counter() - t0)

        fold_dir = run.fold_dir(STAGE, k)
        fold_dir.mkdir(parents=True, exist_ok=True)
        files = [fold_dir / "svr.joblib", fold_dir / "config.json", fold_dir / "oof.csv"]
        with atomic_path(fold_dir / "svr.joblib") as tmp:
            joblib.dump(portable(svr), tmp)
        if scaler is not None:
            with atomic_path(fold_dir / "scaler.joblib") as tmp:
                joblib.dump(scaler, tmp)
            files.append(fold_dir / "scaler.joblib")
        else:
            (fold_dir / "scaler.joblib").unlink(missing_ok=True)
        write_json(fold_dir / "config.json", {"fold": k, "backend": backend, "stage1_weights_sha256": weights[k],
                                              "features": chosen, "standardize": scale,
                                              "n_features": int(X.shape[1]), "svr": dataclasses.asdict(cfg)})
        oof = pd.DataFrame({ID_COL: np.asarray(train.ids)[va], "fold": k, "target": targets[va], "pred": pred})
        write_csv(fold_dir / "oof.csv", oof)
        oofs.append(oof)
        entries[str(k)] = {"files": file_digests(stage_dir, files)}

    oof = pd.concat(oofs, ignore_index=True)
    write_csv(stage_dir / "oof_svr.csv", oof)
    write_manifest(run, STAGE, {
        "folds": entries, "stage1_manifest_sha256": manifest_digest(run, "stage1"),
        "oof_svr_sha256": sha256_file(stage_dir / "oof_svr.csv"), "use_meta": cfg.use_meta,
        "standardize": scale, "backend": backend, "features": chosen, "select": cfg.select,
        "frozen": frozen_record(chosen_sources, frozen), "n_features": int(X.shape[1]), "partial_stage1": partial,
    })
    table = oof_table(merge_oof(run), {"NN head": "nn", "SVR head": "svr", "blend 0.5": "blend"},
                      stage1["mean_baseline"])
    print(f"\nStage 2 OOF RMSE (run {cfg.run!r}, SVR C={cfg.C:g} {cfg.kernel}, backend {backend}, features "
          f"{'+'.join(chosen)}, scaler {'on' if scale else 'off'}):")
    print(format_table(table))
    print(f"Artifacts: {stage_dir}\n")
    return table


def _tuned_embeddings(cfg: SVRConfig, run: RunDir, stage1: dict, k: int, weights_sha: str, pixels: np.ndarray,
                      stage_dir) -> torch.Tensor:
    """Fold k's fine-tuned embeddings of every training image (cached by checkpoint hash), CPU float32."""
    fold1 = run.fold_dir("stage1", k)
    model = load_fold_model(read_json(fold1 / "config.json")["model"], fold1 / "model.safetensors")
    cache = embedding_cache_path(stage_dir / "emb", k, "train", weights_sha, images_key(pixels), flip=False)
    emb = fold_embeddings(model, pixels, cache, cfg.batch_size, cfg.device, num_workers=cfg.num_workers)
    if emb.shape[1] != stage1["model"]["feature_dim"]:
        raise ArtifactError(f"fold {k}: embedding size {emb.shape[1]} does not match stage 1's feature_dim "
                            f"{stage1['model']['feature_dim']}. Re-run train-backbone for run {cfg.run!r}.")
    return emb.float().cpu()
