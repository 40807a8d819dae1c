"""`pipeline.py infer`: every head of one or several runs on the test photos, blended -> submission.csv.

Each run contributes its NN head and its SVR head (each averaged over its folds). `--blend W` gives W to
the mean NN head and 1 - W to the mean SVR head; `--blend auto` chooses the weights on out-of-fold
predictions; `--weights-from ensemble.json` replays an earlier submission's runs and weights.

Offline and self-contained: needs only the named runs' artifacts and a data dir with test.csv + test/
(no training images, no network, no GPU), as in Kaggle's code competitions. It writes nothing under
the artifacts it reads (on Kaggle they are a read-only input dataset): the submission and report go
to --out, decoded images and embeddings to --cache-dir.
"""
from __future__ import annotations

import logging
import os
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
from stage1_backbone.completeness import check_complete

from .blend import best_weight, blend_curve, family_weights, fit_weights
from .config import InferConfig
from .ensemble import HEAD_KINDS, Ensemble, EnsembleSpec, head_name
from .ensemble_oof import check_shared_folds, ensemble_oof
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
    default = (first.root if len(runs) == 1 else Path(cfg.artifacts_dir) / "ensembles" / "+".join(runs))
    out = Path(cfg.out) if cfg.out else default / "submission.csv"
    if not _writable(out.parent):
        raise ConfigError(f"Cannot write the submission to {out.parent} (read-only; e.g. artifacts mounted as a "
                          f"Kaggle input). Pass --out to a writable place, e.g. --out /kaggle/working/submission.csv.")
    if cfg.cache_dir:
        cache = Path(cfg.cache_dir)
    else:  # the artifacts' shared image cache when we may write there, else beside the submission
        cache = first.image_cache if _writable(first.image_cache) else out.parent / "cache"
    return out, cache


def planned_spec(cfg: InferConfig) -> EnsembleSpec:
    """The runs and TTA setting to use: from --runs/--tta, or from the ensemble.json of --weights-from."""
    if not cfg.weights_from:
        return EnsembleSpec(cfg.artifacts_dir, parse_runs(cfg), {}, cfg.tta)
    saved = EnsembleSpec.load(Path(cfg.weights_from))
    if cfg.runs.strip() and parse_runs(cfg) != saved.runs:
        raise ConfigError(f"--runs {cfg.runs!r} but --weights-from {cfg.weights_from} was made of runs "
                          f"{','.join(saved.runs)}. Drop --runs (the file names its runs) or use a matching file.")
    if cfg.tta and not saved.tta:
        raise ConfigError(f"--tta, but the weights in {cfg.weights_from} were used without TTA. Drop --tta to "
                          f"replay them, or run infer with --tta and --blend to make new ones.")
    known = {head_name(run, kind) for run in saved.runs for kind in HEAD_KINDS}
    if not saved.weights or set(saved.weights) - known:
        raise ConfigError(f"{cfg.weights_from}: weights {sorted(saved.weights)} must name heads of its runs "
                          f"({sorted(known)}). Use an ensemble.json written by `python pipeline.py infer`.")
    # The artifacts dir is today's, not the one recorded (the artifacts may have moved, e.g. to Kaggle).
    return EnsembleSpec(cfg.artifacts_dir, saved.runs, dict(saved.weights), saved.tta)


def auto_weights(oof: pd.DataFrame, runs: list[str]) -> tuple[dict[str, float], str]:
    """--blend auto. One run: today's 0.01 grid over the NN weight (exact, and the blend curve shows it).
    Several runs: one weight per head by SLSQP, started from each run's own grid optimum as well, so the
    ensemble's OOF RMSE is never above the best single run's."""
    if len(runs) == 1:
        return family_weights(runs, best_weight(blend_curve(oof))), "chosen on OOF by --blend auto, 0.01 grid"
    heads = [head_name(run, kind) for run in runs for kind in HEAD_KINDS]
    starts = []
    for run in runs:
        w = best_weight(blend_curve(oof.assign(nn=oof[head_name(run, "nn")], svr=oof[head_name(run, "svr")])))
        starts.append(np.array([family_weights([run], w).get(h, 0.0) for h in heads]))
    w = fit_weights(oof[heads].to_numpy(), oof["target"].to_numpy(), starts)
    return {h: float(x) for h, x in zip(heads, w)}, "fitted on OOF by --blend auto (scipy SLSQP, >= 0, sum 1)"


def family_share(weights: dict[str, float], runs: list[str]) -> float | None:
    """W if the weights are `--blend W` (W spread evenly over the NN heads, 1 - W over the SVR heads), else None."""
    share = sum(weights.get(head_name(run, "nn"), 0.0) for run in runs)
    even = family_weights(runs, share)
    return share if all(abs(weights.get(h, 0.0) - w) < 1e-9 for h, w in even.items()) else None


def svr_note(stage2: dict) -> str:
    """The SVR's sources for the report; a set chosen on OOF makes its OOF RMSE slightly optimistic."""
    features = "+".join(stage2.get("features", ["tuned"]))
    note = f"SVR features: {features}, scaler {'on' if stage2['standardize'] else 'off'}"
    if stage2.get("select", "none") != "none":
        return (note + f" (chosen on OOF by fit-svr --select {stage2['select']}: the SVR's OOF RMSE is slightly "
                "optimistic, since the set was chosen on these same rows).")
    return note + "."


def infer(cfg: InferConfig) -> pd.DataFrame:
    """Write the submission, ensemble.json and report; return the submission."""
    blend = None if cfg.weights_from else cfg.blend_weight
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with test.csv and test/<Id>.jpg.")
    spec = planned_spec(cfg)
    runs = spec.runs
    out, cache = output_paths(cfg, runs)
    ensemble = Ensemble(spec, cfg.device, cfg.batch_size, cfg.num_workers, emb_cache_dir=cache / "emb")
    if len(runs) > 1:
        check_shared_folds(cfg.artifacts_dir, runs, {run: p.stage1 for run, p in ensemble.predictors.items()})
    notes = []
    for run, predictor in ensemble.predictors.items():
        partial = check_complete(run_dir(cfg.artifacts_dir, run), predictor.stage1, cfg.allow_partial, "infer")
        notes += [(f"Run {run!r}: " if len(runs) > 1 else "") + note
                  for note in [*stage1_notes(predictor.stage1, partial), svr_note(predictor.stage2)]]

    oof = None
    try:
        oof = ensemble_oof(cfg.artifacts_dir, runs)
    except FileNotFoundError as e:
        if not cfg.weights_from:
            raise
        log.warning("No out-of-fold predictions (%s): the report lists the replayed weights only.", e.filename)
    chosen_by = f"replayed from {cfg.weights_from}"
    if not cfg.weights_from:
        if blend is None:
            spec.weights, chosen_by = auto_weights(oof, runs)
        else:
            spec.weights, chosen_by = family_weights(runs, blend), "given by --blend"
    share = family_share(spec.weights, runs)

    test = read_split(cfg.data_dir, "test", require_meta=ensemble.needs_meta)
    heads = ensemble.heads(SplitImages(test.image_paths, cache, "test"), test.meta() if ensemble.needs_meta else None)
    submission = pd.DataFrame({ID_COL: test.ids, "Pawpularity": ensemble.score(heads)})

    table = head_table = curve = None
    final_label = f"blend {share:.2f}" if share is not None else "ensemble"
    if oof is not None:
        oof = oof.assign(blend=ensemble.score({h: oof[h].to_numpy() for h in spec.weights}))
        labels = ({"NN head": head_name(runs[0], "nn"), "SVR head": head_name(runs[0], "svr")} if len(runs) == 1
                  else {h: h for r in runs for h in (head_name(r, "nn"), head_name(r, "svr"))})
        table = oof_table(oof, {**labels, final_label: "blend"}, ensemble.predictors[runs[0]].stage1["mean_baseline"])
        curve = blend_curve(oof)
    head_table = pd.DataFrame(
        [{"head": h, "OOF RMSE": rmse(oof[h], oof["target"]) if oof is not None else float("nan"),
          "weight": spec.weights.get(h, 0.0)} for r in runs for h in (head_name(r, "nn"), head_name(r, "svr"))]
        + [{"head": final_label, "OOF RMSE": rmse(oof["blend"], oof["target"]) if oof is not None else float("nan"),
            "weight": sum(spec.weights.values())}])

    with exclusive(out.parent / ".infer.lock", f"{out} and its report"):
        with atomic_path(out) as tmp:  # never a partial submission.csv
            submission.to_csv(tmp, index=False)
        spec.save(out.parent / "ensemble.json")  # what score/serve and --weights-from replay
        report = write_report(out.parent, oof, table, head_table, curve, share, chosen_by, out, submission, notes)

    if blend is None and not cfg.weights_from and len(runs) == 1:
        print(f"--blend auto: NN weight {share:.2f} (OOF RMSE {curve['rmse'].min():.3f}; "
              f"NN only {curve['rmse'].iat[-1]:.3f}, SVR only {curve['rmse'].iat[0]:.3f})")
    print(f"\nHeads ({chosen_by}; TTA {'on' if spec.tta else 'off'}):")
    print(format_table(head_table))
    if table is not None:
        what = (f"final = {share:.2f} x NN + {1 - share:.2f} x SVR" if share is not None and len(runs) == 1
                else f"final = {final_label}")
        print(f"\nOOF RMSE (run{'s' if len(runs) > 1 else ''} {','.join(runs)}, {what}):")
        print(format_table(table))
    print(*notes, sep="\n")
    print(f"Submission: {out} ({len(submission)} rows)\nReport:     {report}\n")
    return submission
