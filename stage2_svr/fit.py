"""`pipeline.py fit-svr`: the feature bank's chosen sources -> a head (scaler + SVR) per fold -> OOF.

Sources (stage2_svr/sources.py): each fold's fine-tuned backbone (`tuned`) and frozen pretrained
models, computed and cached by the feature bank (stage2_svr/bank.py), which infer and score call too.
The set of sources and the scaler are chosen on OOF RMSE by greedy forward selection
(stage2_svr/selection.py).

Reads only stage 1's artifacts (checked against its manifest first) and the training images. Writes
stage 2's files (stage2_svr/manifest.py), the manifest last; features go to <artifacts>/features/.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import joblib
import numpy as np
import pandas as pd

from pawcore.artifacts import atomic_path, sha256_file, write_csv, write_json
from pawcore.data import ID_COL, Split, read_split
from pawcore.folds import read_trained_folds
from pawcore.images import SplitImages
from pawcore.locks import exclusive
from pawcore.manifest import file_digests
from pawcore.metrics import format_table, oof_table
from pawcore.oof import merge_oof
from pawcore.run import RunDir, run_dir
from stage1_backbone.manifest import Stage1Manifest

from .backends import resolve_backend
from .bank import FeatureBank
from .config import SVRConfig
from .head import SVRParams, fit_head, portable_head
from .manifest import Stage2Fold, Stage2Manifest
from .selection import format_selection, forward_select
from .sources import Source, check_available, parse_sources

log = logging.getLogger(__name__)
LAYOUT = Stage2Manifest  # where each of the stage's files goes


@dataclass
class TrainRows:
    """The training rows as stage 2 sees them: Ids, targets, each row's fold, and the folds to fit."""

    ids: np.ndarray
    targets: np.ndarray
    fold_of: np.ndarray
    folds: list[int]

    def split(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, validation rows) of fold k."""
        return np.flatnonzero(self.fold_of != k), np.flatnonzero(self.fold_of == k)


def fit_svr(cfg: SVRConfig) -> pd.DataFrame:
    """Run stage 2 and return the OOF RMSE table (mean baseline, NN, SVR, 50/50 blend)."""
    run = run_dir(cfg.artifacts_dir, cfg.run)
    Stage1Manifest.read(run)  # a missing stage 1 stops here, naming the command to run
    with exclusive(LAYOUT.stage_dir(run) / ".lock", f"stage2 of run {cfg.run!r}"):
        return _fit_svr(cfg, run)


def resolve_frozen_size(cfg: SVRConfig, stage1_size: int) -> int | None:
    """--frozen-size -> pixels for frozen models named without @SIZE (None: each model's own)."""
    if cfg.frozen_size == "native":
        return None
    if cfg.frozen_size == "stage1":
        return int(stage1_size)
    return int(cfg.frozen_size)  # a number of pixels: SVRConfig checked it


def _fit_svr(cfg: SVRConfig, run: RunDir) -> pd.DataFrame:
    stage1 = Stage1Manifest.load(run)  # before any work: a changed stage 1 stops here
    folds = read_trained_folds(run.folds_csv, stage1.folds_csv_sha256, run.run)
    partial = stage1.check_complete(cfg.allow_partial, "fit-svr")
    params = SVRParams(resolve_backend(cfg.svr_backend), cfg.kernel, cfg.C, cfg.epsilon, cfg.gamma)
    sources = parse_sources(cfg.features, resolve_frozen_size(cfg, stage1.img_size))
    for source in sources:
        check_available(source)  # missing weights stop here, before any image is decoded
    LAYOUT.path(run).unlink(missing_ok=True)  # until the new one is written, stage 2 is unfinished

    train = read_split(cfg.data_dir or stage1.data_dir, "train", require_meta=cfg.use_meta)
    rows = TrainRows(np.asarray(train.ids), train.targets(), folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy(),
                     sorted(stage1.folds))
    bank = _train_bank(cfg, run, stage1, train)
    log.info("SVR backend: %s; feature sources: %s", params.backend, ", ".join(s.spec for s in sources))

    chosen, scale = _choose_sources(cfg, run, bank, sources, rows, params)
    fold_entries, n_features = _fit_folds(cfg, run, stage1, bank, chosen, scale, rows, params)
    Stage2Manifest(
        run, folds=fold_entries, stage1_manifest_sha256=stage1.digest(),
        oof_svr_sha256=sha256_file(LAYOUT.oof_file(run)), features=[s.spec for s in chosen],
        frozen=bank.frozen_record(chosen), n_features=n_features, use_meta=cfg.use_meta, standardize=scale,
        backend=params.backend, select=cfg.select, partial_stage1=partial,
    ).write()
    return _print_result(cfg, run, stage1, chosen, scale, params)


def _train_bank(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, train: Split) -> FeatureBank:
    """The training photos' feature bank; features cached under <artifacts>/features/ for every run."""
    return FeatureBank(stage1, SplitImages(train.image_paths, run.image_cache, train.name), run.feature_cache,
                       meta=train.meta() if cfg.use_meta else None, batch_size=cfg.batch_size, device=cfg.device,
                       num_workers=cfg.num_workers)


def _choose_sources(cfg: SVRConfig, run: RunDir, bank: FeatureBank, sources: list[Source], rows: TrainRows,
                    params: SVRParams) -> tuple[list[Source], bool]:
    """(the sources, in order, and whether to scale): all given ones (--select none) or chosen on OOF."""
    selection_csv = LAYOUT.selection_file(run)
    if cfg.select == "none":
        selection_csv.unlink(missing_ok=True)
        return sources, cfg.standardize
    by_spec = {s.spec: s for s in sources}
    scalers = (False, True) if cfg.select == "auto" else (cfg.standardize,)
    log.info("Forward selection over %d sources on OOF RMSE (scaler %s):", len(sources),
             "off/on" if len(scalers) == 2 else "on" if cfg.standardize else "off")
    t0 = time.perf_counter()
    picked = forward_select(list(by_spec), lambda names, k: bank.matrix(k, [by_spec[n] for n in names],
                                                                         with_meta=cfg.use_meta),
                            rows.fold_of, rows.targets, params, scalers, rows.folds)
    log.info("Selection done in %.1fs", time.perf_counter() - t0)
    write_csv(selection_csv, picked.table)
    print(f"\nFeature selection on OOF (SVR C={cfg.C:g}; the chosen set's OOF RMSE is slightly optimistic: it "
          f"was chosen on these rows):")
    print(format_selection(picked.table))
    return [by_spec[n] for n in picked.sources], picked.standardize


def _fit_folds(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, bank: FeatureBank, chosen: list[Source],
               scale: bool, rows: TrainRows, params: SVRParams) -> tuple[dict[int, Stage2Fold], int]:
    """Fit and save every fold's head on its training rows; write the OOF files. -> (fold entries, width)."""
    entries, oofs = {}, []
    for k in rows.folds:
        X = bank.matrix(k, chosen, with_meta=cfg.use_meta)
        tr, va = rows.split(k)
        t0 = time.perf_counter()
        head, pred = fit_head(X, tr, va, rows.targets, params, scale)
        log.info("fold %d: head fitted on %d x %d in %.1fs", k, len(tr), X.shape[1], time.perf_counter() - t0)
        oof = pd.DataFrame({ID_COL: rows.ids[va], "fold": k, "target": rows.targets[va], "pred": pred})
        record = {"fold": k, "backend": params.backend, "stage1_weights_sha256": stage1.weights_sha256(k),
                  "features": [s.spec for s in chosen], "standardize": scale, "n_features": int(X.shape[1]),
                  "svr": dataclasses.asdict(cfg)}
        entries[k] = _save_fold(run, k, head, record, oof)
        oofs.append(oof)
    write_csv(LAYOUT.oof_file(run), pd.concat(oofs, ignore_index=True))
    return entries, int(X.shape[1])


def _save_fold(run: RunDir, k: int, head, record: dict, oof: pd.DataFrame) -> Stage2Fold:
    files = [LAYOUT.head_file(run, k), LAYOUT.fold_config_file(run, k), LAYOUT.fold_oof_file(run, k)]
    with atomic_path(files[0]) as tmp:
        joblib.dump(portable_head(head), tmp)
    write_json(files[1], record)
    write_csv(files[2], oof)
    return Stage2Fold(file_digests(LAYOUT.stage_dir(run), files))


def _print_result(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, chosen: list[Source], scale: bool,
                  params: SVRParams) -> pd.DataFrame:
    oof = merge_oof(Stage1Manifest.oof_file(run), LAYOUT.oof_file(run))
    table = oof_table(oof, {"NN head": "nn", "SVR head": "svr", "blend 0.5": "blend"}, stage1.mean_baseline)
    print(f"\nStage 2 OOF RMSE (run {cfg.run!r}, SVR C={cfg.C:g} {cfg.kernel}, backend {params.backend}, features "
          f"{'+'.join(s.spec for s in chosen)}, scaler {'on' if scale else 'off'}):")
    print(format_table(table))
    print(f"Artifacts: {LAYOUT.stage_dir(run)}\n")
    return table
