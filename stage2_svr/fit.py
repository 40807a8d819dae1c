"""`pipeline.py fit-svr`: the feature bank's chosen sources -> a head (scaler, balance, SVR) per fold -> OOF.

With `--heads svr,gbdt` a second head per fold, gradient-boosted trees (stage2_svr/gbdt.py), is fitted on
the same folds from the same bank, saved, recalibrated and written out the same way: its own head file
and OOF file per fold, listed in the one stage-2 manifest.

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
from typing import Callable

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
from .manifest import HEAD_KINDS, SVR, Stage2Fold, Stage2Manifest
from .recalibrate import IDENTITY, apply_map, cross_fitted_maps
from .nested import Nested, nested_oof, nested_wanted
from .search import COARSE, FINE, MatrixFn
from .selection import Selection, Space, format_selection, forward_select
from .sources import Source, check_available, parse_sources, read_prompts, with_prompts

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
    sources = with_prompts(parse_sources(cfg.features, resolve_frozen_size(cfg, stage1.img_size)),
                           read_prompts(cfg.clip_prompts))
    for source in sources:
        check_available(source)  # missing weights stop here, before any image is decoded
    kinds = head_kinds(cfg)
    if "gbdt" in kinds:
        from .gbdt import xgboost_device

        xgboost_device(cfg.device)  # no XGBoost stops here, before any work
    LAYOUT.path(run).unlink(missing_ok=True)  # until the new one is written, stage 2 is unfinished

    train = read_split(cfg.data_dir or stage1.data_dir, "train", require_meta=cfg.use_meta)
    rows = TrainRows(np.asarray(train.ids), train.targets(), folds.set_index(ID_COL).loc[train.ids, "fold"].to_numpy(),
                     sorted(stage1.folds))
    bank = _train_bank(cfg, run, stage1, train)
    log.info("SVR backend: %s; feature sources: %s", params.backend, ", ".join(s.spec for s in sources))

    choice = _choose(cfg, run, bank, sources, rows, params, space, chosen)
    fitted = {kind: _fit_folds(cfg, run, stage1, bank, _plan(cfg, kind, choice, sources), rows) for kind in kinds}
    _remove_stale_heads(run, kinds, rows.folds)
    svr = fitted[SVR]
    fold_entries = {k: Stage2Fold({name: digest for f in fitted.values() for name, digest in f.files[k].items()})
                    for k in rows.folds}
    used = list({s.spec: s for f in fitted.values() for s in f.sources}.values())
    Stage2Manifest(
        run, folds=fold_entries, stage1_manifest_sha256=stage1.digest(),
        oof_svr_sha256=svr.oof_sha256, features=[s.spec for s in choice.sources],
        frozen=bank.frozen_record(used), n_features=svr.n_features, use_meta=cfg.use_meta,
        standardize=choice.prep.standardize, backend=params.backend, select=cfg.select, partial_stage1=partial,
        C=choice.params.C, gamma=str(cfg.gamma), gamma_factor=choice.params.gamma_factor, epsilon=cfg.epsilon,
        balance=choice.prep.balance, chosen_on_oof=choice.chosen, oof_rmse=svr.oof_rmse,
        nested_rmse=choice.nested.rmse if choice.nested else None, nested_note=choice.nested_note,
        recalibration=svr.maps, heads={kind: f.record() for kind, f in fitted.items() if kind != SVR},
    ).write()
    return _print_result(cfg, run, stage1, choice, fitted)


def head_kinds(cfg: SVRConfig) -> list[str]:
    """--heads as a list: 'svr' first, then the others (SVRConfig checked the names)."""
    kinds = [k.strip() for k in cfg.heads.split(",") if k.strip()]
    assert kinds[0] == SVR and set(kinds) <= set(HEAD_KINDS), kinds
    return kinds


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


@dataclass
class HeadPlan:
    """How one head kind is fitted on a fold: its sources (in column order) and `fit(X, targets, train rows,
    widths)` -> (the head fitted on those rows, ready to save and load anywhere; its settings for the record)."""

    kind: str
    sources: list[Source]
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]], tuple[object, dict]]
    note: str = ""  # how far to trust its OOF RMSE, for the printout


@dataclass
class FittedHead:
    """One head kind over all folds: each fold's files, and what the manifest records."""

    kind: str
    sources: list[Source]
    files: dict[int, dict[str, str]]
    n_features: int
    oof_rmse: float
    oof_sha256: str
    maps: dict[int, tuple[float, float]]
    settings: dict
    note: str = ""

    def record(self) -> dict:
        """The manifest's entry of a head beside the SVR."""
        return {"features": [s.spec for s in self.sources], "n_features": self.n_features,
                "oof_sha256": self.oof_sha256, "oof_rmse": self.oof_rmse, "recalibration": self.maps,
                "settings": self.settings, "note": self.note}


def _plan(cfg: SVRConfig, kind: str, choice: Choice, candidates: list[Source]) -> HeadPlan:
    """The SVR on the chosen sources, or the GBDT on its own set (--gbdt-features)."""
    if kind == SVR:
        def fit_svr_fold(X: np.ndarray, y: np.ndarray, tr: np.ndarray, widths: tuple[int, ...]) -> tuple[object, dict]:
            head, _ = fit_head(X, tr, tr[:1], y, choice.params, choice.prep, widths)
            return portable_head(head), {  # the OOF comes from the very head infer loads (cuML -> scikit-learn)
                "backend": choice.params.backend, "standardize": choice.prep.standardize,
                "balance": choice.prep.balance, "C": choice.params.C, "gamma": float(head.named_steps["svr"].gamma),
                "gamma_factor": choice.params.gamma_factor, "chosen_on_oof": list(choice.chosen)}
        return HeadPlan(SVR, choice.sources, fit_svr_fold)
    from .gbdt import GBDTParams, make_gbdt_head, xgboost_device

    params, device = GBDTParams(), xgboost_device(cfg.device)
    sources = choice.sources if cfg.gbdt_features == "svr" else candidates
    note = ("its sources are the SVR's, chosen on these rows: optimistic" if cfg.gbdt_features == "svr" and choice.chosen
            else "nothing chosen on these rows (fixed settings; trees by early stopping on inner splits of each "
                 "fold's training rows): an honest estimate")

    def fit_gbdt_fold(X: np.ndarray, y: np.ndarray, tr: np.ndarray, widths: tuple[int, ...]) -> tuple[object, dict]:
        head = make_gbdt_head(params, widths, device).fit(X[tr], y[tr])
        trees = head.named_steps["gbdt"]
        return head, {"device": device, "gbdt": dataclasses.asdict(params), "n_trees": trees.n_trees_,
                      "inner_stop_rmse": trees.inner_rmse_}
    return HeadPlan(kind, sources, fit_gbdt_fold, note)


def _fit_folds(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, bank: FeatureBank, plan: HeadPlan,
               rows: TrainRows) -> FittedHead:
    """Fit and save every fold's head of one kind on its training rows; write its OOF files.

    Heads are fitted on the photos as they are; the OOF rows are scored as infer scores test photos: on
    each of the run's test-time views (stage 1's --tta), each view recalibrated, then averaged."""
    views = tta_views(stage1.tta)
    fitted, raw = {}, np.full((len(views), len(rows.targets)), np.nan)
    matrix = _matrix_fn(cfg, bank, plan.sources)
    names = tuple(s.spec for s in plan.sources)
    for k in rows.folds:
        X, widths = matrix(names, k)
        tr, va = rows.split(k)
        t0 = time.perf_counter()
        head, settings = plan.fit(X, rows.targets, tr, widths)
        for i, view in enumerate(views):
            raw[i, va] = predict(head, (X if view == PHOTO else matrix(names, k, view)[0])[va])
        log.info("fold %d: %s head fitted on %d x %d in %.1fs", k, plan.kind, len(tr), X.shape[1],
                 time.perf_counter() - t0)
        fitted[k] = head, {"fold": k, "head": plan.kind, "stage1_weights_sha256": stage1.weights_sha256(k),
                           "features": list(names), "block_widths": list(widths), "n_features": int(X.shape[1]),
                           **settings, "svr": dataclasses.asdict(cfg)}
    maps = _recalibration(cfg, raw.mean(axis=0), rows, plan.kind)
    files, oofs = {}, []
    for k, (head, record) in fitted.items():
        va = rows.split(k)[1]
        oof = pd.DataFrame({ID_COL: rows.ids[va], "fold": k, "target": rows.targets[va],
                            "pred": np.mean([apply_map(view_raw[va], maps[k]) for view_raw in raw], axis=0),
                            "pred_raw": raw[:, va].mean(axis=0)})
        files[k] = _save_fold(run, k, plan.kind, head, {**record, "recalibration": list(maps[k])}, oof)
        oofs.append(oof)
    oof = pd.concat(oofs, ignore_index=True)
    oof_file = LAYOUT.oof_file_of(run, plan.kind)
    write_csv(oof_file, oof)
    settings = {key: value for key, value in record.items()
                if key not in ("fold", "stage1_weights_sha256", "recalibration", "svr", "n_trees", "inner_stop_rmse",
                               "gamma")}
    return FittedHead(plan.kind, plan.sources, files, int(record["n_features"]), rmse(oof["pred"], oof["target"]),
                      sha256_file(oof_file), maps, settings, plan.note)


def _remove_stale_heads(run: RunDir, kinds: list[str], folds: list[int]) -> None:
    """Files of a head kind an earlier fit-svr wrote and this one did not: gone, so none is mistaken for current."""
    for kind in set(HEAD_KINDS) - set(kinds):
        LAYOUT.oof_file_of(run, kind).unlink(missing_ok=True)
        for k in folds:
            for path in (LAYOUT.head_file_of(run, k, kind), LAYOUT.fold_config_file_of(run, k, kind),
                         LAYOUT.fold_oof_file_of(run, k, kind)):
                path.unlink(missing_ok=True)


def _recalibration(cfg: SVRConfig, raw: np.ndarray, rows: TrainRows, kind: str = SVR) -> dict[int, tuple[float, float]]:
    """Each fold's map (stage2_svr/recalibrate.py), or the identity when --recalibrate is off, or auto and
    the cross-fitted OOF RMSE is not lower with it. Every head kind gets its own decision."""
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
    log.info("%s head recalibration (cross-fitted): OOF RMSE %.3f -> %.3f: %s", kind.upper(), before, after,
             "applied" if keep else "not applied (no gain)")
    return maps if keep else identity


def _save_fold(run: RunDir, k: int, kind: str, head, record: dict, oof: pd.DataFrame) -> dict[str, str]:
    """Write fold k's head, config and OOF of one kind -> {path relative to stage2/: SHA-256}."""
    files = [LAYOUT.head_file_of(run, k, kind), LAYOUT.fold_config_file_of(run, k, kind),
             LAYOUT.fold_oof_file_of(run, k, kind)]
    with atomic_path(files[0]) as tmp:
        joblib.dump(head, tmp)
    for legacy in ("svr.joblib", "scaler.joblib"):  # a stage 2 written before heads were one Pipeline
        (LAYOUT.fold_dir(run, k) / legacy).unlink(missing_ok=True)
    write_json(files[1], record)
    write_csv(files[2], oof)
    return file_digests(LAYOUT.stage_dir(run), files)


def _print_result(cfg: SVRConfig, run: RunDir, stage1: Stage1Manifest, choice: Choice,
                  fitted: dict[str, FittedHead]) -> pd.DataFrame:
    others = {kind: LAYOUT.oof_file_of(run, kind) for kind in fitted if kind != SVR}
    oof = merge_oof(Stage1Manifest.oof_file(run), LAYOUT.oof_file(run), extra=others)
    table = oof_table(oof, {"NN head": "nn", "SVR head": "svr", **{f"{k.upper()} head": k for k in others},
                            "blend 0.5": "blend"}, stage1.mean_baseline)
    p = choice.params
    print(f"\nStage 2 OOF RMSE (run {cfg.run!r}, SVR {p.kernel} C={p.C:g} gamma={factor_words(p.gamma_factor)} x "
          f"{p.gamma} epsilon={p.epsilon:g}, backend {p.backend}, features {'+'.join(s.spec for s in choice.sources)}, "
          f"scaler {'on' if choice.prep.standardize else 'off'}, balance {'on' if choice.prep.balance else 'off'}):")
    print(format_table(table))
    print(_honesty(choice, rmse(oof["svr"], oof["target"])))
    for kind in others:
        f = fitted[kind]
        print(f"{kind.upper()} head: OOF RMSE {f.oof_rmse:.3f} on {'+'.join(s.spec for s in f.sources)} "
              f"({f.n_features} features); {f.note}.")
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
