"""`pipeline.py infer`: NN and SVR head of every fold on the test photos, blended -> submission.csv.

Offline and self-contained: needs only the artifacts directory and a data dir with test.csv + test/
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
from pawcore.locks import exclusive
from pawcore.metrics import format_table, oof_table
from pawcore.oof import merge_oof
from pawcore.run import RunDir, run_dir

from .blend import best_weight, blend_curve, parse_blend
from .config import InferConfig
from .ensemble import Ensemble, EnsembleSpec, head_name
from .predictor import SplitImages
from .report import write_report

log = logging.getLogger(__name__)


def _writable(path: Path) -> bool:
    """Can files be created at `path` (or, if it does not exist yet, in its nearest existing parent)?"""
    while not path.exists():
        path = path.parent
    return os.access(path, os.W_OK)


def output_paths(cfg: InferConfig, run: RunDir) -> tuple[Path, Path]:
    """(submission path, cache dir). Defaults stay out of read-only artifacts, with a clear error if not."""
    out = Path(cfg.out) if cfg.out else run.root / "submission.csv"
    if not _writable(out.parent):
        raise ConfigError(f"Cannot write the submission to {out.parent} (read-only; e.g. artifacts mounted as a "
                          f"Kaggle input). Pass --out to a writable place, e.g. --out /kaggle/working/submission.csv.")
    if cfg.cache_dir:
        cache = Path(cfg.cache_dir)
    else:  # the artifacts' shared image cache when we may write there, else beside the submission
        cache = run.image_cache if _writable(run.image_cache) else out.parent / "cache"
    return out, cache


def svr_note(stage2: dict) -> str:
    """The SVR's sources for the report; a set chosen on OOF makes its OOF RMSE slightly optimistic."""
    features = "+".join(stage2.get("features", ["tuned"]))
    note = f"SVR features: {features}, scaler {'on' if stage2['standardize'] else 'off'}"
    if stage2.get("select", "none") != "none":
        return (note + f" (chosen on OOF by fit-svr --select {stage2['select']}: the SVR's OOF RMSE is slightly "
                "optimistic, since the set was chosen on these same rows).")
    return note + "."


def infer(cfg: InferConfig) -> pd.DataFrame:
    """Write the submission (and report) and return it."""
    weight = parse_blend(cfg.blend)
    if not cfg.data_dir:
        raise ConfigError("--data-dir is required: a folder with test.csv and test/<Id>.jpg.")
    run = run_dir(cfg.artifacts_dir, cfg.run)
    out, cache = output_paths(cfg, run)
    spec = EnsembleSpec(cfg.artifacts_dir, [cfg.run], {}, cfg.tta)
    ensemble = Ensemble(spec, cfg.device, cfg.batch_size, cfg.num_workers, emb_cache_dir=cache / "emb")
    test = read_split(cfg.data_dir, "test", require_meta=ensemble.needs_meta)
    heads = ensemble.heads(SplitImages(test.image_paths, cache, "test"), test.meta() if ensemble.needs_meta else None)
    oof = merge_oof(run)
    curve = blend_curve(oof)
    chosen_by = "given by --blend"
    if weight is None:
        weight, chosen_by = best_weight(curve), "chosen on OOF by --blend auto"
        print(f"--blend auto: NN weight {weight:.2f} (OOF RMSE {curve['rmse'].min():.3f}; "
              f"NN only {curve['rmse'].iat[-1]:.3f}, SVR only {curve['rmse'].iat[0]:.3f})")
    oof = oof.assign(blend=np.clip(weight * oof["nn"] + (1 - weight) * oof["svr"], 1, 100))

    spec.weights = {head_name(cfg.run, "nn"): weight, head_name(cfg.run, "svr"): 1 - weight}
    submission = pd.DataFrame({ID_COL: test.ids, "Pawpularity": ensemble.score(heads)})
    table = oof_table(oof, {"NN head": "nn", "SVR head": "svr", f"blend {weight:.2f}": "blend"},
                      ensemble.predictors[cfg.run].stage1["mean_baseline"])
    with exclusive(out.parent / ".infer.lock", f"{out} and its report"):
        with atomic_path(out) as tmp:  # never a partial submission.csv
            submission.to_csv(tmp, index=False)
        spec.save(out.parent / "ensemble.json")  # what score/serve replay for one photo
        report = write_report(out.parent, oof, table, curve, weight, chosen_by, out, submission,
                              svr_note(ensemble.predictors[cfg.run].stage2))
    print(f"\nOOF RMSE (run {cfg.run!r}, final = {weight:.2f} x NN + {1 - weight:.2f} x SVR, TTA {'on' if cfg.tta else 'off'}):")
    print(format_table(table))
    print(f"Submission: {out} ({len(submission)} rows)\nReport:     {report}\n")
    return submission
