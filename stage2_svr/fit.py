"""`pipeline.py fit-svr`: the feature bank's chosen sources -> a head (scaler, balance, SVR) per fold -> OOF.

Sources (stage2_svr/sources.py): each fold's fine-tuned backbone (`tuned`) and frozen pretrained
models, computed and cached by the feature bank (stage2_svr/bank.py), which infer and score call too.
The set of sources (greedy forward selection), the scaler, the balance of the sources and the SVR's C
and kernel width are chosen on OOF RMSE (stage2_svr/selection.py, stage2_svr/search.py); when that is
cheap, a nested CV estimate of the whole choice is reported beside the optimistic OOF RMSE
(stage2_svr/nested.py).

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
from pawcore.metrics import format_table, oof_table, rmse
from pawcore.oof import merge_oof
from pawcore.run import RunDir, run_dir
from pawcore.views import IDENTITY as PHOTO, tta_views
from stage1_backbone.manifest import Stage1Manifest

from .backends import parse_gamma, resolve_backend
from .bank import FeatureBank
from .config import SVRConfig
from .head import Prep, SVRParams, factor_words, fit_head, portable_head, predict
from .manifest import Stage2Fold, Stage2Manifest
from .recalibrate import IDENTITY, apply_map, cross_fitted_maps
from .nested import Nested, nested_oof, nested_wanted
from .search import COARSE, FINE, MatrixFn
from .selection import Selection, Space, format_selection, forward_select
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


def parse_C(value: str) -> float | None:
    """--C as a number, or None for 'auto' (chosen on OOF); SVRConfig checked it is one or the other."""
    return None if value == "auto" else float(value)


def choice_space(cfg: SVRConfig, kernel: str) -> tuple[Space, tuple[str, ...]]:
    """(what fit-svr chooses among on OOF, the names of what it chooses: sources, scaler, balance, C, gamma)."""
    C = parse_C(cfg.C)
    parse_gamma(cfg.gamma)  # a bad --gamma stops here, before any work
    scalers = (False, True) if cfg.select == "auto" else (cfg.standardize,)
    balances = (False, True) if cfg.balance == "auto" else (cfg.balance == "on",)
    coarse, fine = (COARSE, FINE) if C is None else (((C, 1.0),), ())
    if kernel == "linear":  # no kernel width: one point per C
        coarse, fine = (tuple(dict.fromkeys((c, 1.0) for c, _ in grid)) for grid in (coarse, fine))
    chosen = (("sources",) if cfg.select != "none" else ()) + (("scaler",) if len(scalers) > 1 else ()) \
        + (("balance",) if len(balances) > 1 else ()) + (("C", "gamma") if C is None else ())
    space = Space(tuple(Prep(s, b) for s in scalers for b in balances), coarse, fine, cfg.select != "none")
    return space, chosen


@dataclass
class Choice:
    """The head fit-svr saves: its sources, preparation and SVR settings, and how they were chosen."""

    sources: list[Source]
    prep: Prep
    params: SVRParams
    chosen: tuple[str, ...]            # what was chosen on OOF (empty: nothing)
    selection: Selection | None = None
    nested: Nested | None = None
    nested_note: str = ""


def _fit_svr(cfg: SVRConfig, run: RunDir) -> pd.DataFrame:
    stage1 = Stage1Manifest.load(run)  # before any work: a changed stage 1 stops here
    folds = read_trained_folds(run.folds_csv, stage1.folds_csv_sha256, run.run)
    partial = stage1.check_complete(cfg.allow_partial, "fit-svr")
    # With --C auto the C here is a placeholder: the choice sets C and the gamma factor.
    params = SVRParams(resolve_backend(cfg.svr_backend), cfg.kernel, parse_C(cfg.C) or 1.0, cfg.epsilon, cfg.gamma)
    space, chosen = choice_space(cfg, cfg.kernel)
    sources = parse_sources(cfg.features, resolve_frozen_size(cfg, stage1.img_size))
    for source in sources:
        check_available(source)  # missing weights stop here, before any image is decoded
    LAYOUT.path(run).unlink(missing_ok=True)  # until the new one is written, stage 2 is unfinished

    train = read_split(cfg.data_dir or stage1.data_dir, "train", require_meta=cfg.use_meta)
    rows = TrainRows(np.asarray(train.ids), train.targets(), folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy(),
                     sorted(stage1.folds))
    bank = _train_bank(cfg, run, stage1, train)
    log.info("SVR backend: %s; feature sources: %s", params.backend, ", ".join(s.spec for s in sources))

    choice = _choose(cfg, run, bank, sources, rows, params, space, chosen)
    fold_entries, n_features, oof_rmse, maps = _fit_folds(cfg, run, stage1, bank, choice, rows)
    Stage2Manifest(
        run, folds=fold_entries, stage1_manifest_sha256=stage1.digest(),
        oof_svr_sha256=sha256_file(LAYOUT.oof_file(run)), features=[s.spec for s in choice.sources],
        frozen=bank.frozen_record(choice.sources), n_features=n_features, use_meta=cfg.use_meta,
        standardize=choice.prep.standardize, backend=params.backend, select=cfg.select, partial_stage1=partial,
        C=choice.params.C, gamma=str(cfg.gamma), gamma_factor=choice.params.gamma_factor, epsilon=cfg.epsilon,
        balance=choice.prep.balance, chosen_on_oof=choice.chosen, oof_rmse=oof_rmse,
        nested_rmse=choice.nested.rmse if choice.nested else None, nested_note=choice.nested_note,
        recalibration=maps,
    ).write()
    return _print_result(cfg, run, stage1, choice)


def _train_bank(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, train: Split) -> FeatureBank:
    """The training photos' feature bank; features cached under <artifacts>/features/ for every run."""
    return FeatureBank(stage1, SplitImages(train.image_paths, run.image_cache, train.name), run.feature_cache,
                       meta=train.meta() if cfg.use_meta else None, batch_size=cfg.batch_size, device=cfg.device,
                       num_workers=cfg.num_workers)


def _matrix_fn(cfg: SVRConfig, bank: FeatureBank, sources: list[Source]) -> MatrixFn:
    """(source specs, fold[, view]) -> (the fold's matrix of those sources, their block widths), from the bank."""
    by_spec = {s.spec: s for s in sources}

    def matrix(names: tuple[str, ...], k: int, view: str = PHOTO) -> tuple[np.ndarray, tuple[int, ...]]:
        blocks = bank.blocks(k, [by_spec[n] for n in names], view, with_meta=cfg.use_meta)
        return np.concatenate(blocks, axis=1), tuple(b.shape[1] for b in blocks)
    return matrix


def _choose(cfg: SVRConfig, run: RunDir, bank: FeatureBank, sources: list[Source], rows: TrainRows,
            params: SVRParams, space: Space, chosen: tuple[str, ...]) -> Choice:
    """The head's sources, preparation, C and gamma: as given, or chosen on OOF (then the nested estimate)."""
    selection_csv, nested_csv = LAYOUT.selection_file(run), LAYOUT.nested_file(run)
    selection_csv.unlink(missing_ok=True)
    nested_csv.unlink(missing_ok=True)
    by_spec, matrix = {s.spec: s for s in sources}, _matrix_fn(cfg, bank, sources)
    if not chosen:  # everything given: nothing to choose, nothing to nest
        prep = space.preps[0].effective(matrix(tuple(by_spec), rows.folds[0])[1])
        return Choice(sources, prep, params, chosen, nested_note="nothing was chosen on OOF")
    log.info("Choosing %s on OOF RMSE over %d sources (%d preparations x %d+%d SVR settings):", ", ".join(chosen),
             len(sources), len(space.preps), len(space.coarse), len(space.fine))
    t0 = time.perf_counter()
    picked = forward_select(list(by_spec), matrix, rows.fold_of, rows.targets, params, space, rows.folds)
    seconds = time.perf_counter() - t0
    write_csv(selection_csv, picked.table)
    print(f"\nChosen on OOF ({', '.join(chosen)}; gamma as a multiple of {cfg.gamma!r}) in {seconds:.1f}s. The "
          f"chosen row's OOF RMSE is optimistic: it was chosen on these rows.")
    print(format_selection(picked.table))
    choice = Choice([by_spec[n] for n in picked.sources], picked.prep,
                    dataclasses.replace(params, C=picked.C, gamma_factor=picked.gamma_factor), chosen, picked)
    run_nested, choice.nested_note = nested_wanted(cfg.nested, len(rows.ids), len(sources), len(rows.folds), True)
    if run_nested:
        choice.nested = nested_oof(list(by_spec), matrix, rows.fold_of, rows.targets, params, space, rows.folds)
        write_csv(nested_csv, choice.nested.table)
    return choice


def _fit_folds(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, bank: FeatureBank, choice: Choice,
               rows: TrainRows) -> tuple[dict[int, Stage2Fold], int, float, dict[int, tuple[float, float]]]:
    """Fit and save every fold's head on its training rows; write the OOF files.
    -> (fold entries, width, the saved OOF's RMSE, each fold's recalibration).

    Heads are fitted on the photos as they are; the OOF rows are scored as infer scores test photos: on
    each of the run's test-time views (stage 1's --tta), each view recalibrated, then averaged."""
    views = tta_views(stage1.tta)
    fitted, raw = {}, np.full((len(views), len(rows.targets)), np.nan)
    matrix = _matrix_fn(cfg, bank, choice.sources)
    names = tuple(s.spec for s in choice.sources)
    for k in rows.folds:
        X, widths = matrix(names, k)
        tr, va = rows.split(k)
        t0 = time.perf_counter()
        head, _ = fit_head(X, tr, va, rows.targets, choice.params, choice.prep, widths)
        head = portable_head(head)  # the OOF comes from the very head infer loads (cuML -> scikit-learn)
        for i, view in enumerate(views):
            raw[i, va] = predict(head, (X if view == PHOTO else matrix(names, k, view)[0])[va])
        log.info("fold %d: head fitted on %d x %d in %.1fs", k, len(tr), X.shape[1], time.perf_counter() - t0)
        fitted[k] = head, {
            "fold": k, "backend": choice.params.backend, "stage1_weights_sha256": stage1.weights_sha256(k),
            "features": list(names), "block_widths": list(widths), "standardize": choice.prep.standardize,
            "balance": choice.prep.balance, "n_features": int(X.shape[1]), "C": choice.params.C,
            "gamma": float(head.named_steps["svr"].gamma), "gamma_factor": choice.params.gamma_factor,
            "chosen_on_oof": list(choice.chosen), "svr": dataclasses.asdict(cfg)}
    maps = _recalibration(cfg, raw.mean(axis=0), rows)
    entries, oofs = {}, []
    for k, (head, record) in fitted.items():
        va = rows.split(k)[1]
        pred = np.mean([apply_map(view_raw[va], maps[k]) for view_raw in raw], axis=0)
        oof = pd.DataFrame({ID_COL: rows.ids[va], "fold": k, "target": rows.targets[va],
                            "pred": pred, "pred_raw": raw[:, va].mean(axis=0)})
        entries[k] = _save_fold(run, k, head, {**record, "recalibration": list(maps[k])}, oof)
        oofs.append(oof)
    oof = pd.concat(oofs, ignore_index=True)
    write_csv(LAYOUT.oof_file(run), oof)
    return entries, int(record["n_features"]), rmse(oof["pred"], oof["target"]), maps


def _recalibration(cfg: SVRConfig, raw: np.ndarray, rows: TrainRows) -> dict[int, tuple[float, float]]:
    """Each fold's map (stage2_svr/recalibrate.py), or the identity when --recalibrate is off, or auto and
    the cross-fitted OOF RMSE is not lower with it."""
    identity = {k: IDENTITY for k in rows.folds}
    if cfg.recalibrate == "off" or len(rows.folds) < 2:
        return identity
    maps = cross_fitted_maps(raw, rows.targets, rows.fold_of, rows.folds)
    scored = np.isin(rows.fold_of, rows.folds)
    mapped = np.full(len(raw), np.nan)
    for k in rows.folds:
        va = rows.split(k)[1]
        mapped[va] = apply_map(raw[va], maps[k])
    before, after = rmse(raw[scored], rows.targets[scored]), rmse(mapped[scored], rows.targets[scored])
    keep = cfg.recalibrate == "on" or after < before
    log.info("SVR head recalibration (cross-fitted): OOF RMSE %.3f -> %.3f: %s", before, after,
             "applied" if keep else "not applied (no gain)")
    return maps if keep else identity


def _save_fold(run: RunDir, k: int, head, record: dict, oof: pd.DataFrame) -> Stage2Fold:
    files = [LAYOUT.head_file(run, k), LAYOUT.fold_config_file(run, k), LAYOUT.fold_oof_file(run, k)]
    with atomic_path(files[0]) as tmp:
        joblib.dump(head, tmp)
    for legacy in ("svr.joblib", "scaler.joblib"):  # a stage 2 written before heads were one Pipeline
        (LAYOUT.fold_dir(run, k) / legacy).unlink(missing_ok=True)
    write_json(files[1], record)
    write_csv(files[2], oof)
    return Stage2Fold(file_digests(LAYOUT.stage_dir(run), files))


def _print_result(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, choice: Choice) -> pd.DataFrame:
    oof = merge_oof(Stage1Manifest.oof_file(run), LAYOUT.oof_file(run))
    table = oof_table(oof, {"NN head": "nn", "SVR head": "svr", "blend 0.5": "blend"}, stage1.mean_baseline)
    p = choice.params
    print(f"\nStage 2 OOF RMSE (run {cfg.run!r}, SVR {p.kernel} C={p.C:g} gamma={factor_words(p.gamma_factor)} x "
          f"{p.gamma} epsilon={p.epsilon:g}, backend {p.backend}, features {'+'.join(s.spec for s in choice.sources)}, "
          f"scaler {'on' if choice.prep.standardize else 'off'}, balance {'on' if choice.prep.balance else 'off'}):")
    print(format_table(table))
    print(_honesty(choice, rmse(oof["svr"], oof["target"])))
    print(f"Artifacts: {LAYOUT.stage_dir(run)}\n")
    return table


def _honesty(choice: Choice, svr_rmse: float) -> str:
    """The line that says how far to trust the SVR head's OOF RMSE."""
    if not choice.chosen:
        return "Nothing was chosen on these rows: the SVR head's OOF RMSE above is an honest estimate."
    if choice.nested is None:
        return (f"The SVR head's {svr_rmse:.3f} is optimistic ({', '.join(choice.chosen)} chosen on these rows); "
                f"no nested estimate ({choice.nested_note}).")
    return (f"SVR head: OOF RMSE {svr_rmse:.3f} (optimistic: {', '.join(choice.chosen)} chosen on these rows); "
            f"nested estimate {choice.nested.rmse:.3f} (honest: each fold scored by a head chosen without it; "
            f"trust this one; took {choice.nested.seconds:.0f}s; each fold's choice in nested.csv).")
