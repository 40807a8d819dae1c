"""`pipeline.py infer`: every head of one or several runs on the test photos, blended -> submission.csv.

Each run contributes its NN head and its stage-2 heads (the SVR, and the GBDT when fit-svr fitted one), each
averaged over its folds. `--blend W` gives W to the mean NN head and 1 - W to the mean stage-2 head; `--blend
auto` chooses the weights on out-of-fold predictions; `--weights-from ensemble.json` replays an earlier
submission's runs and weights.

Offline and self-contained: needs only the named runs' artifacts and a data dir with test.csv + test/
(no training images, no network, no GPU), as in Kaggle's code competitions. It writes nothing under
the artifacts it reads (on Kaggle they are a read-only input dataset): the submission and report go
to --out, decoded images and embeddings to --cache-dir.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pawcore.artifacts import atomic_path
from pawcore.data import ID_COL, read_split
from pawcore.errors import ConfigError
from pawcore.images import SplitImages
from pawcore.locks import exclusive
from pawcore.metrics import format_table, oof_table, rmse
from pawcore.run import run_dir
from pawcore.views import parse_tta
from stage2_svr.manifest import Stage2Manifest

from .blend import best_weight, blend_curve, cross_fitted_rmse, family_weights, fit_weights
from .config import InferConfig
from .ensemble import HEAD_KINDS, Ensemble, EnsembleSpec, head_name, load_predictors
from .ensemble_oof import check_shared_folds, ensemble_oof
from .predictor import RunPredictor
from .report import stage1_notes, write_report

log = logging.getLogger(__name__)


def _writable(path: Path) -> bool:
    """Can files be created at `path` (or, if it does not exist yet, in its nearest existing parent)?"""
    while not path.exists():
        path = path.parent
    return os.access(path, os.W_OK)


def parse_runs(cfg: InferConfig) -> list[str]:
    """--runs 'a,b,c' (default: --run alone)."""
    runs = [r.strip() for r in cfg.runs.split(",") if r.strip()] or [cfg.run]
    twice = sorted({r for r in runs if runs.count(r) > 1})
    if twice:
        raise ConfigError(f"--runs {cfg.runs!r}: {twice} listed more than once; name each run once.")
    return runs


def output_paths(cfg: InferConfig, runs: list[str]) -> tuple[Path, Path]:
    """(submission path, cache dir). Defaults stay out of read-only artifacts, with a clear error if not."""
    first = run_dir(cfg.artifacts_dir, runs[0])
    default = (first.submission_csv if len(runs) == 1
               else Path(cfg.artifacts_dir) / "ensembles" / "+".join(runs) / first.submission_csv.name)
    out = Path(cfg.out) if cfg.out else default
    if not _writable(out.parent):
        raise ConfigError(f"Cannot write the submission to {out.parent} (read-only; e.g. artifacts mounted as a "
                          f"Kaggle input). Pass --out to a writable place, e.g. --out /kaggle/working/submission.csv.")
    if cfg.cache_dir:
        cache = Path(cfg.cache_dir)
    else:  # the artifacts' shared image cache when we may write there, else beside the submission
        cache = first.image_cache if _writable(first.image_cache) else out.parent / "cache"
    return out, cache


def planned_spec(cfg: InferConfig) -> EnsembleSpec:
    """The runs and test-time views to use: from --runs/--tta, or from the ensemble.json of --weights-from.
    With --tta run the views are filled in by `run_views` once the runs are loaded."""
    if not cfg.weights_from:
        return EnsembleSpec(cfg.artifacts_dir, parse_runs(cfg), {}, [] if cfg.tta == "run" else list(parse_tta(cfg.tta)))
    saved = EnsembleSpec.load(Path(cfg.weights_from))
    if cfg.runs.strip() and parse_runs(cfg) != saved.runs:
        raise ConfigError(f"--runs {cfg.runs!r} but --weights-from {cfg.weights_from} was made of runs "
                          f"{','.join(saved.runs)}. Drop --runs (the file names its runs) or use a matching file.")
    if cfg.tta != "run" and list(parse_tta(cfg.tta)) != saved.tta:
        raise ConfigError(f"--tta {cfg.tta}, but the weights in {cfg.weights_from} were used with test-time views "
                          f"{saved.tta or 'none'}. Drop --tta to replay them, or run infer with --tta and --blend "
                          f"to make new ones.")
    # The artifacts dir is today's, not the one recorded (the artifacts may have moved, e.g. to Kaggle).
    return EnsembleSpec(cfg.artifacts_dir, saved.runs, dict(saved.weights), saved.tta)


def run_views(cfg: InferConfig, predictors: dict[str, RunPredictor], planned: list[str]) -> list[str]:
    """--tta run: the views the runs were trained with (their OOF, so the blend weights, used them); runs
    trained with different views need --tta. Views other than a run's own are allowed, with a warning."""
    own = {run: list(p.stage1.tta) for run, p in predictors.items()}
    if cfg.weights_from or cfg.tta != "run":
        for run, views in own.items():
            if views != planned:
                log.warning("Run %r's OOF predictions were made with test-time views %s, the test photos get %s: "
                            "blend weights fitted on OOF may not carry over.", run, views or "none", planned or "none")
        return planned
    if len({tuple(v) for v in own.values()}) > 1:
        raise ConfigError(f"--tta run, but the runs were trained with different test-time views "
                          f"({'; '.join(f'{r}: {v or None}' for r, v in own.items())}). Give --tta VIEWS for all of "
                          f"them, e.g. --tta {','.join(next(v for v in own.values() if v) or ['flip'])}.")
    return next(iter(own.values()))


def run_heads(oof: pd.DataFrame, runs: list[str]) -> list[str]:
    """Every head of the runs that has OOF columns, in run order ('a:nn', 'a:svr', 'a:gbdt', 'b:nn', ...)."""
    return [head_name(run, kind) for run in runs for kind in HEAD_KINDS if head_name(run, kind) in oof.columns]


def stage2_kinds(heads: list[str], runs: list[str]) -> dict[str, list[str]]:
    """{run: its stage-2 head kinds} from head names."""
    return {run: [h.split(":", 1)[1] for h in heads if h.startswith(f"{run}:") and not h.endswith(":nn")]
            for run in runs}


def auto_weights(oof: pd.DataFrame, runs: list[str]) -> tuple[dict[str, float], str]:
    """--blend auto. One run with two heads (NN, SVR): the 0.01 grid over the NN weight (exact, and the blend
    curve shows it). Several runs, or more heads (fit-svr --heads svr,gbdt): one weight per head by SLSQP,
    started from each run's own NN/SVR grid optimum as well, so the result's OOF RMSE is never above it."""
    heads = run_heads(oof, runs)
    if len(heads) == 2:
        return family_weights(runs, best_weight(blend_curve(oof))), "chosen on OOF by --blend auto, 0.01 grid"
    starts = []
    for run in runs:
        w = best_weight(blend_curve(oof.assign(nn=oof[head_name(run, "nn")], svr=oof[head_name(run, "svr")])))
        starts.append(np.array([family_weights([run], w).get(h, 0.0) for h in heads]))
    w = fit_weights(oof[heads].to_numpy(), oof["target"].to_numpy(), starts)
    return {h: float(x) for h, x in zip(heads, w)}, "fitted on OOF by --blend auto (scipy SLSQP, >= 0, sum 1)"


def family_share(weights: dict[str, float], runs: list[str], heads: list[str] | None = None) -> float | None:
    """W if the weights are `--blend W` (W spread evenly over the NN heads, 1 - W over the stage-2 heads
    `heads` names; default: the SVRs), else None."""
    share = sum(weights.get(head_name(run, "nn"), 0.0) for run in runs)
    even = family_weights(runs, share, stage2_kinds(heads, runs) if heads else None)
    return share if all(abs(weights.get(h, 0.0) - w) < 1e-9 for h, w in {**dict.fromkeys(weights, 0.0), **even}.items()) \
        else None


def svr_note(stage2: Stage2Manifest) -> str:
    """The SVR head's sources and settings for the report, and how far to trust its OOF RMSE: anything
    chosen on OOF makes it optimistic; the nested estimate (fit-svr --nested) is the honest figure. Then a
    line per other stage-2 head (GBDT): its sources and fit-svr's word on its OOF RMSE."""
    others = "".join(f"\n{kind.upper()} features: {'+'.join(stage2.head_features(kind))}; OOF RMSE "
                     f"{stage2.head_oof_rmse(kind):.3f}: {stage2.heads[kind].get('note', '')}."
                     for kind in stage2.head_kinds if kind != "svr")
    return _svr_words(stage2) + others


def _svr_words(stage2: Stage2Manifest) -> str:
    note = f"SVR features: {'+'.join(stage2.features)}; {stage2.svr_words}"
    if not stage2.chosen_on_oof:
        return note + " (nothing chosen on OOF: the SVR's OOF RMSE is an honest estimate)."
    oof = f" {stage2.oof_rmse:.3f}" if stage2.oof_rmse is not None else ""
    note += (f". Chosen on OOF by fit-svr ({', '.join(stage2.chosen_on_oof)}), so the SVR's OOF RMSE{oof} is "
             f"optimistic")
    if stage2.nested_rmse is None:
        return note + f"; no nested estimate ({stage2.nested_note or 'not run'})."
    return (note + f"; trust its nested estimate {stage2.nested_rmse:.3f} instead (the whole choice redone inside "
            f"each fold without that fold's rows).")


def infer(cfg: InferConfig) -> pd.DataFrame:
    """Write the submission, ensemble.json and report; return the submission."""
    blend = None if cfg.weights_from else cfg.blend_weight
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with test.csv and test/<Id>.jpg.")
    planned = planned_spec(cfg)
    out, cache = output_paths(cfg, planned.runs)
    predictors = load_predictors(cfg.artifacts_dir, planned.runs, cfg.device, cfg.batch_size, cfg.num_workers, cache)
    planned.tta = run_views(cfg, predictors, planned.tta)
    notes = check_runs(cfg, predictors)
    oof = read_oof(cfg, planned.runs)
    heads = [head_name(run, kind) for run, p in predictors.items() for kind in p.kinds]
    weights, chosen_by = (planned.weights, f"replayed from {cfg.weights_from}") if cfg.weights_from else \
        choose_weights(blend, oof, planned.runs, heads)
    ensemble = Ensemble(dataclasses.replace(planned, weights=weights), predictors)

    test = read_split(cfg.data_dir, "test", require_meta=ensemble.needs_meta)
    heads = ensemble.heads(SplitImages(test.image_paths, cache, "test"), test.meta() if ensemble.needs_meta else None)
    submission = pd.DataFrame({ID_COL: test.ids, "Pawpularity": ensemble.score(heads)})
    summary = summarise(ensemble, oof)
    if blend is None and not cfg.weights_from:  # weights fitted on OOF: their honest RMSE beside the fitted one
        summary.cross_fitted = cross_fitted_rmse(oof, lambda rows: auto_weights(rows, planned.runs)[0])
    with exclusive(out.parent / ".infer.lock", f"{out} and its report"):
        with atomic_path(out) as tmp:  # never a partial submission.csv
            submission.to_csv(tmp, index=False)
        ensemble.spec.save(out.parent / "ensemble.json")  # what score/serve and --weights-from replay
        report = write_report(out.parent, summary.oof, summary.table, summary.head_table, summary.curve,
                              summary.share, chosen_by, out, submission, notes, summary.cross_fitted)
    print_summary(blend, cfg, ensemble, summary, chosen_by, notes)
    print(f"Submission: {out} ({len(submission)} rows)\nReport:     {report}\n")
    return submission


def check_runs(cfg: InferConfig, predictors: dict[str, RunPredictor]) -> list[str]:
    """Refuse runs that cannot be blended (other folds; stage 1 incomplete without --allow-partial);
    return the report's notes on what each run's OOF numbers mean."""
    runs = list(predictors)
    if len(runs) > 1:
        check_shared_folds(cfg.artifacts_dir, runs, {run: p.stage1.folds_csv_sha256 for run, p in predictors.items()})
    notes = []
    for run, predictor in predictors.items():
        partial = predictor.stage1.check_complete(cfg.allow_partial, "infer")
        notes += [(f"Run {run!r}: " if len(runs) > 1 else "") + note
                  for note in [*stage1_notes(predictor.stage1, partial), svr_note(predictor.stage2)]]
    return notes


def read_oof(cfg: InferConfig, runs: list[str]) -> pd.DataFrame | None:
    """Every head's OOF predictions; None when they are absent and --weights-from needs none."""
    try:
        return ensemble_oof(cfg.artifacts_dir, runs)
    except FileNotFoundError as e:
        if not cfg.weights_from:
            raise
        log.warning("No out-of-fold predictions (%s): the report lists the replayed weights only.", e.filename)
        return None


def choose_weights(blend: float | None, oof: pd.DataFrame, runs: list[str],
                   heads: list[str] | None = None) -> tuple[dict[str, float], str]:
    """--blend W as family weights, or --blend auto fitted on OOF; with the words the report uses. `heads`:
    every head of the runs (default: those with OOF columns)."""
    if blend is None:
        return auto_weights(oof, runs)
    heads = heads or run_heads(oof, runs)
    return family_weights(runs, blend, stage2_kinds(heads, runs)), "given by --blend"


@dataclass
class Summary:
    """What the report and the console show: OOF with the final score, its tables, the blend curve."""

    oof: pd.DataFrame | None
    table: pd.DataFrame | None
    head_table: pd.DataFrame
    curve: pd.DataFrame | None
    share: float | None
    final_label: str
    cross_fitted: float | None = None  # --blend auto: the blend's RMSE with weights fitted without each fold


def summarise(ensemble: Ensemble, oof: pd.DataFrame | None) -> Summary:
    spec, runs = ensemble.spec, ensemble.spec.runs
    head_names = ensemble.head_names
    share = family_share(spec.weights, runs, head_names)
    final_label = f"blend {share:.2f}" if share is not None else "ensemble"
    table = curve = None
    if oof is not None:
        oof = oof.assign(blend=ensemble.score({h: oof[h].to_numpy() for h in spec.weights}))
        labels = ({f"{h.split(':', 1)[1].upper()} head": h for h in head_names} if len(runs) == 1
                  else {h: h for h in head_names})
        table = oof_table(oof, {**labels, final_label: "blend"}, ensemble.predictors[runs[0]].stage1.mean_baseline)
        curve = blend_curve(oof)

    def oof_rmse(column: str) -> float:
        return rmse(oof[column], oof["target"]) if oof is not None else float("nan")

    def oof_std(column: str) -> float:  # a head far below the target's std is compressed toward the mean
        return float(oof[column].std()) if oof is not None else float("nan")

    head_table = pd.DataFrame(
        [{"head": h, "OOF RMSE": oof_rmse(h), "OOF std": oof_std(h), "weight": spec.weights.get(h, 0.0)}
         for h in head_names]
        + [{"head": final_label, "OOF RMSE": oof_rmse("blend"), "OOF std": oof_std("blend"),
            "weight": sum(spec.weights.values())}])
    return Summary(oof, table, head_table, curve, share, final_label)


def print_summary(blend: float | None, cfg: InferConfig, ensemble: Ensemble, summary: Summary, chosen_by: str,
                  notes: list[str]) -> None:
    runs, share = ensemble.spec.runs, summary.share
    if blend is None and not cfg.weights_from and len(ensemble.head_names) == 2:
        curve = summary.curve
        print(f"--blend auto: NN weight {share:.2f} (OOF RMSE {curve['rmse'].min():.3f}; "
              f"NN only {curve['rmse'].iat[-1]:.3f}, SVR only {curve['rmse'].iat[0]:.3f})")
    if summary.cross_fitted is not None:
        print(f"Blend fitted on OOF: {summary.head_table['OOF RMSE'].iat[-1]:.3f} (optimistic, weights chosen on "
              f"these rows); cross-fitted: {summary.cross_fitted:.3f} (each fold scored with weights fitted on the "
              f"other folds; trust this one).")
    print(f"\nHeads ({chosen_by}; test-time views: the photo{''.join(' + ' + v for v in ensemble.spec.tta)}):")
    print(format_table(summary.head_table))
    if summary.table is not None:
        what = (f"final = {share:.2f} x NN + {1 - share:.2f} x SVR" if share is not None and len(ensemble.head_names) == 2
                else f"final = {summary.final_label}")
        print(f"\nOOF RMSE (run{'s' if len(runs) > 1 else ''} {','.join(runs)}, {what}):")
        print(format_table(summary.table))
    print(*notes, sep="\n")
