"""`pipeline.py fit-svr`: per fold, frozen embeddings -> (scaler) -> SVR on train rows -> OOF on val rows.

Reads only the artifacts of stage 1 (checked against its manifest first) and the training images.
Writes artifacts/<run>/stage2/fold{k}/{svr.joblib, scaler.joblib, config.json, oof.csv},
stage2/oof_svr.csv, the embedding cache stage2/emb/, and stage2/manifest.json last.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import joblib
import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from pawcore.artifacts import atomic_path, read_json, sha256_file, write_csv, write_json
from pawcore.check import load_split
from pawcore.data import ID_COL
from pawcore.errors import ArtifactError
from pawcore.locks import exclusive
from pawcore.images import images_key
from pawcore.metrics import format_table, oof_table
from pawcore.oof import merge_oof
from pawcore.run import RunDir, file_digests, load_manifest, manifest_digest, run_dir, write_manifest
from stage1_backbone.completeness import check_complete
from stage1_backbone.model import load_fold_model

from .backends import make_svr, portable, predict_numpy, resolve_backend, to_backend_input
from .config import SVRConfig
from .embeddings import embedding_cache_path, fold_embeddings
from .features import features, standardize

log = logging.getLogger(__name__)
STAGE = "stage2"


def check_folds_unchanged(run: RunDir, stage1: dict) -> pd.DataFrame:
    if sha256_file(run.folds_csv) != stage1["folds_csv_sha256"]:
        raise ArtifactError(f"{run.folds_csv} changed after stage 1 was trained. Re-run "
                            f"`python pipeline.py train-backbone --run {run.run}`.")
    return pd.read_csv(run.folds_csv, dtype={ID_COL: str})


def fit_svr(cfg: SVRConfig) -> pd.DataFrame:
    """Run stage 2 and return the OOF RMSE table (mean baseline, NN, SVR, 50/50 blend)."""
    run = run_dir(cfg.artifacts_dir, cfg.run)
    if not run.manifest_path("stage1").is_file():
        load_manifest(run, "stage1")  # raises, naming the command to run
    with exclusive(run.stage(STAGE) / ".lock", f"{STAGE} of run {cfg.run!r}"):
        return _fit_svr(cfg, run)


def _fit_svr(cfg: SVRConfig, run: RunDir) -> pd.DataFrame:
    stage1 = load_manifest(run, "stage1")  # before any work: missing/changed stage 1 stops here
    folds = check_folds_unchanged(run, stage1)
    partial = check_complete(run, stage1, cfg.allow_partial, "fit-svr")
    backend = resolve_backend(cfg.svr_backend)
    data_dir = cfg.data_dir or stage1["data_dir"]
    model_cfg = stage1["model"]
    run.manifest_path(STAGE).unlink(missing_ok=True)  # until the new one is written, stage 2 is unfinished

    train, pixels = load_split(data_dir, "train", model_cfg["img_size"], run.image_cache, require_meta=cfg.use_meta)
    fold_of = folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy()
    targets = train.targets()
    meta = train.meta() if cfg.use_meta else None
    stage_dir = run.stage(STAGE)
    entries, oofs = {}, []
    log.info("SVR backend: %s", backend)

    for fold, entry in sorted(stage1["folds"].items(), key=lambda kv: int(kv[0])):
        k = int(fold)
        fold1 = run.fold_dir("stage1", k)
        weights_sha = entry["files"][f"fold{k}/model.safetensors"]
        model = load_fold_model(read_json(fold1 / "config.json")["model"], fold1 / "model.safetensors")
        cache = embedding_cache_path(stage_dir / "emb", k, "train", weights_sha, images_key(pixels), flip=False)
        X = features(fold_embeddings(model, pixels, cache, cfg.batch_size, cfg.device,
                                     num_workers=cfg.num_workers), meta)
        if X.shape[1] != model_cfg["feature_dim"] + (meta.shape[1] if meta is not None else 0):
            raise ArtifactError(f"fold {k}: embedding size {X.shape[1]} does not match stage 1's feature_dim "
                                f"{model_cfg['feature_dim']}. Re-run train-backbone for run {cfg.run!r}.")
        tr, va = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        scaler = StandardScaler().fit(X[tr].cpu().numpy()) if cfg.standardize else None
        Xs = standardize(X, scaler)
        svr = make_svr(backend, kernel=cfg.kernel, C=cfg.C, epsilon=cfg.epsilon, gamma=cfg.gamma)
        t0 = time.perf_counter()
        svr.fit(to_backend_input(Xs[tr], backend), targets[tr])
        pred = np.clip(predict_numpy(svr, to_backend_input(Xs[va], backend)), 1, 100)
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
        write_json(fold_dir / "config.json", {"fold": k, "backend": backend, "stage1_weights_sha256": weights_sha,
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
        "standardize": cfg.standardize, "backend": backend, "partial_stage1": partial,
    })
    table = oof_table(merge_oof(run), {"NN head": "nn", "SVR head": "svr", "blend 0.5": "blend"},
                      stage1["mean_baseline"])
    print(f"\nStage 2 OOF RMSE (run {cfg.run!r}, SVR C={cfg.C:g} {cfg.kernel}, backend {backend}):")
    print(format_table(table))
    print(f"Artifacts: {stage_dir}\n")
    return table
