"""`pipeline.py infer`: NN and SVR head of every fold on the test photos, blended -> submission.csv.

Offline and self-contained: needs only the artifacts directory and a data dir with test.csv + test/
(no training images, no network, no GPU), as in Kaggle's code competitions. One forward pass per fold
(and per TTA view) gives the embedding; the NN head and the SVR both read it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pawcore.artifacts import atomic_path, load_pickle_verified, read_json
from pawcore.check import load_split
from pawcore.data import ID_COL
from pawcore.errors import ArtifactError, ConfigError
from pawcore.locks import exclusive
from pawcore.images import images_key
from pawcore.metrics import format_table, oof_table
from pawcore.run import RunDir, load_manifest, manifest_digest, run_dir
from stage1_backbone.model import load_fold_model, logits_to_score
from stage2_svr.backends import predict_numpy
from stage2_svr.embeddings import embedding_cache_path, fold_embeddings
from stage2_svr.fit import features, merge_oof, standardize

from .blend import best_weight, blend_curve, parse_blend
from .config import InferConfig
from .report import write_report

log = logging.getLogger(__name__)


def load_stages(run: RunDir) -> tuple[dict, dict]:
    """Both manifests, checked: files present and unchanged, stage 2 built on today's stage 1."""
    stage1 = load_manifest(run, "stage1")
    stage2 = load_manifest(run, "stage2")
    if stage2["stage1_manifest_sha256"] != manifest_digest(run, "stage1"):
        raise ArtifactError(f"Stage 1 of run {run.run!r} changed after fit-svr ran. Run "
                            f"`python pipeline.py fit-svr --run {run.run} --artifacts-dir {run.artifacts_dir}`.")
    if set(stage1["folds"]) != set(stage2["folds"]):
        raise ArtifactError(f"Stage 1 has folds {sorted(stage1['folds'])} but stage 2 has {sorted(stage2['folds'])}. "
                            f"Run `python pipeline.py fit-svr --run {run.run} --artifacts-dir {run.artifacts_dir}`.")
    return stage1, stage2


def predict_fold(run: RunDir, k: int, stage1: dict, stage2: dict, pixels: np.memmap,
                 meta: np.ndarray | None, cfg: InferConfig) -> tuple[np.ndarray, np.ndarray]:
    """(NN scores, SVR scores) of fold k on every test image, averaged over the TTA views."""
    fold1, fold2 = run.fold_dir("stage1", k), run.fold_dir("stage2", k)
    model = load_fold_model(read_json(fold1 / "config.json")["model"], fold1 / "model.safetensors")
    digests = stage2["folds"][str(k)]["files"]
    svr = load_pickle_verified(fold2 / "svr.joblib", digests[f"fold{k}/svr.joblib"])
    scaler_key = f"fold{k}/scaler.joblib"
    scaler = load_pickle_verified(fold2 / "scaler.joblib", digests[scaler_key]) if scaler_key in digests else None
    weights_sha = stage1["folds"][str(k)]["files"][f"fold{k}/model.safetensors"]
    meta_t = torch.from_numpy(meta) if meta is not None else None
    nn_views, svr_views = [], []
    for flip in ([False, True] if cfg.tta else [False]):
        cache = embedding_cache_path(run.stage("stage2") / "emb", k, "test", weights_sha, images_key(pixels), flip)
        emb = fold_embeddings(model, pixels, cache, cfg.batch_size, cfg.device, flip, cfg.num_workers).cpu().float()
        with torch.inference_mode():
            nn_views.append(logits_to_score(model.cpu().head_logits(emb, meta_t if model.n_meta else None)).numpy())
        X = standardize(features(emb, meta if stage2["use_meta"] else None), scaler)
        svr_views.append(np.clip(predict_numpy(svr, X.numpy()), 1, 100))
    return np.mean(nn_views, axis=0), np.mean(svr_views, axis=0)


def infer(cfg: InferConfig) -> pd.DataFrame:
    """Write the submission (and report) and return it."""
    weight = parse_blend(cfg.blend)
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with test.csv and test/<Id>.jpg.")
    run = run_dir(cfg.artifacts_dir, cfg.run)
    stage1, stage2 = load_stages(run)
    needs_meta = stage1["model"]["n_meta"] > 0 or stage2["use_meta"]
    size = stage1["model"]["img_size"]
    test, pixels = load_split(cfg.data_dir, "test", size, run.image_cache, require_meta=needs_meta)
    meta = test.meta() if needs_meta else None

    folds = sorted(int(k) for k in stage1["folds"])
    per_fold = [predict_fold(run, k, stage1, stage2, pixels, meta, cfg) for k in folds]
    nn = np.mean([p[0] for p in per_fold], axis=0)
    svr = np.mean([p[1] for p in per_fold], axis=0)

    oof = merge_oof(run)
    curve = blend_curve(oof)
    chosen_by = "given by --blend"
    if weight is None:
        weight, chosen_by = best_weight(curve), "chosen on OOF by --blend auto"
        print(f"--blend auto: NN weight {weight:.2f} (OOF RMSE {curve['rmse'].min():.3f}; "
              f"NN only {curve['rmse'].iat[-1]:.3f}, SVR only {curve['rmse'].iat[0]:.3f})")
    oof = oof.assign(blend=np.clip(weight * oof["nn"] + (1 - weight) * oof["svr"], 1, 100))

    submission = pd.DataFrame({ID_COL: test.ids, "Pawpularity": np.clip(weight * nn + (1 - weight) * svr, 1, 100)})
    out = Path(cfg.out) if cfg.out else run.root / "submission.csv"
    table = oof_table(oof, {"NN head": "nn", "SVR head": "svr", f"blend {weight:.2f}": "blend"},
                      stage1["mean_baseline"])
    with exclusive(out.parent / ".infer.lock", f"{out} and its report"):
        with atomic_path(out) as tmp:  # never a partial submission.csv
            submission.to_csv(tmp, index=False)
        report = write_report(out.parent, oof, table, curve, weight, chosen_by, out, submission)
    print(f"\nOOF RMSE (run {cfg.run!r}, final = {weight:.2f} x NN + {1 - weight:.2f} x SVR, TTA {'on' if cfg.tta else 'off'}):")
    print(format_table(table))
    print(f"Submission: {out} ({len(submission)} rows)\nReport:     {report}\n")
    return submission
