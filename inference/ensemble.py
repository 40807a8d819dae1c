"""The final score: a weighted sum of heads (each run's NN head and its stage-2 heads: SVR, and GBDT when
fit-svr fitted one), recorded in ensemble.json.

`infer` writes ensemble.json beside the submission; `score` and `serve` read it, so a single photo is
scored with exactly the runs, heads, weights and TTA setting of the submission.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pawcore.artifacts import artifact_error, read_json_object, write_json
from pawcore.errors import ArtifactError
from pawcore.metrics import clip_score
from pawcore.images import ImageSet
from pawcore.run import run_dir
from pawcore.views import parse_tta

from stage2_svr.manifest import HEAD_KINDS as STAGE2_KINDS

from .predictor import RunPredictor

HEAD_KINDS = ("nn", *STAGE2_KINDS)  # every kind of head a run can have ("nn", "svr", "gbdt")


def head_name(run: str, kind: str) -> str:
    """'default:nn', 'swin:svr', ...: one column per head in OOF matrices, weights and reports."""
    return f"{run}:{kind}"


@dataclass
class EnsembleSpec:
    """What a submission was made of: runs (in one artifacts dir), one weight per head, and the test-time
    views every head averaged over (names, pawcore/views.py; [] = the photo alone)."""

    artifacts_dir: str
    runs: list[str]
    weights: dict[str, float]
    tta: list[str] = dataclasses.field(default_factory=list)

    def save(self, path: Path) -> None:
        write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path, remake: str = "`python pipeline.py infer`") -> "EnsembleSpec":
        """Read ensemble.json, checking its shape: a damaged or hand-edited file is an ArtifactError naming it."""
        if not Path(path).is_file():
            raise ArtifactError(f"{path} not found: it is written by `python pipeline.py infer` beside the "
                                f"submission. Run infer first, or point to the ensemble.json it wrote.")
        raw = read_json_object(path, remake, required=("artifacts_dir", "runs", "weights"))

        def bad(problem: str) -> ArtifactError:
            return artifact_error(path, problem, remake)

        valid = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(raw) - set(valid)):
            raise bad(f"has unknown key(s) {unknown}; valid keys are {valid}")
        runs, weights, tta = raw["runs"], raw["weights"], raw.get("tta", [])
        if not isinstance(raw["artifacts_dir"], str):
            raise bad(f"has artifacts_dir {raw['artifacts_dir']!r}, not a path (string)")
        if not (isinstance(runs, list) and runs and all(isinstance(r, str) and r for r in runs)):
            raise bad(f"has runs {runs!r}, not a non-empty list of run names")
        if not (isinstance(weights, dict) and weights):
            raise bad(f"has weights {weights!r}, not an object of head name: weight")
        heads = {head_name(r, kind) for r in runs for kind in HEAD_KINDS}
        for name, w in weights.items():
            if name not in heads:
                raise bad(f"weighs head {name!r}, which is not one of its runs' heads {sorted(heads)}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                raise bad(f"gives head {name!r} the weight {w!r}, not a finite number")
        # A file written when the flip was the only view says true or false.
        if not (isinstance(tta, bool) or (isinstance(tta, list) and all(isinstance(v, str) for v in tta))):
            raise bad(f"has tta {tta!r}, not a list of test-time views (or true/false)")
        try:
            views = list(parse_tta(tta))
        except ValueError as e:
            raise bad(f"has tta {tta!r}: {e}") from None
        return cls(raw["artifacts_dir"], list(runs), {k: float(w) for k, w in weights.items()}, views)


class Ensemble:
    """The runs of a spec, loaded once; `heads` gives every head's scores, `score` their weighted sum."""

    def __init__(self, spec: EnsembleSpec, predictors: dict[str, RunPredictor]):
        if list(predictors) != list(spec.runs):
            raise AssertionError(f"predictors for {list(predictors)}, spec runs {spec.runs}")
        self.spec, self.predictors = spec, predictors
        present = set(self.head_names)
        for name, w in spec.weights.items():
            if name not in present:
                run = name.split(":")[0]
                raise ArtifactError(f"The ensemble weighs head {name!r}, but run {run!r} has heads "
                                    f"{[head_name(run, k) for k in predictors[run].kinds]} (its stage 2 was re-fitted "
                                    f"with other --heads since). Run infer again to choose new weights.")

    @property
    def head_names(self) -> list[str]:
        """Every head of every run, in run order: 'a:nn', 'a:svr', 'a:gbdt', 'b:nn', ..."""
        return [head_name(run, kind) for run, p in self.predictors.items() for kind in p.kinds]

    @classmethod
    def load(cls, spec: EnsembleSpec, device: str = "auto", batch_size: int = 64, num_workers: int = 0,
             cache_dir: Path | None = None) -> "Ensemble":
        return cls(spec, load_predictors(spec.artifacts_dir, spec.runs, device, batch_size, num_workers, cache_dir))

    @property
    def needs_meta(self) -> bool:
        return any(p.needs_meta for p in self.predictors.values())

    def heads(self, images: ImageSet, meta: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every head's scores of the images, each averaged over its run's folds: {head name: (N,)}."""
        return {name: scores.mean(axis=0) for name, scores in self.heads_by_fold(images, meta).items()}

    def heads_by_fold(self, images: ImageSet, meta: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every head's scores fold by fold: {head name: (folds, N)}, rows in each run's finished-fold order.
        Runs of an ensemble share their folds.csv; `fold_scores` also needs the same finished folds."""
        out = {}
        for run, predictor in self.predictors.items():
            for kind, pred in predictor.heads_by_fold(images, meta, self.spec.tta).items():
                out[head_name(run, kind)] = pred
        return out

    def fold_scores(self, images: ImageSet) -> np.ndarray:
        """(folds, N): what each fold's models alone give the images, the heads weighted as in `score`
        but not clipped; `final` turns them into the ensemble's score. Used where the folds must be told
        apart: a crop chosen by some folds is judged by the others (advice.crop)."""
        if len({tuple(p.folds) for p in self.predictors.values()}) > 1:  # infer --allow-partial allows it
            raise ArtifactError("The runs of this ensemble have different finished folds ("
                                + "; ".join(f"{r}: {p.folds}" for r, p in self.predictors.items())
                                + "), so their scores cannot be paired fold by fold, which the crop advice and "
                                  "the heatmap need. Finish the missing folds (train-backbone, fit-svr, infer), "
                                  "or score with one run.")
        by_fold = self.heads_by_fold(images)
        return sum(self.spec.weights[name] * by_fold[name] for name in sorted(self.spec.weights))

    @staticmethod
    def final(fold_scores: np.ndarray) -> np.ndarray:
        """The ensemble's score from `fold_scores`: the folds' mean, clipped (equal to `score` of the heads)."""
        return clip_score(fold_scores.mean(axis=0))

    def score(self, heads: dict[str, np.ndarray]) -> np.ndarray:
        """The final Pawpularity: sum of weight x head over the spec's heads, clipped to [1, 100].

        Summed in head-name order, not the weights' dict order (ensemble.json stores its keys sorted), so
        a spec reloaded from ensemble.json scores bit for bit like the one that wrote it."""
        return clip_score(sum(self.spec.weights[name] * heads[name] for name in sorted(self.spec.weights)))


def load_predictors(artifacts_dir: str | Path, runs: list[str], device: str = "auto", batch_size: int = 64,
                    num_workers: int = 0, cache_dir: Path | None = None) -> dict[str, RunPredictor]:
    """Each run's predictor; features of cached splits go to cache_dir/features when given."""
    features = cache_dir / "features" if cache_dir is not None else None
    return {run: RunPredictor(run_dir(artifacts_dir, run), device, batch_size, num_workers, features) for run in runs}


def load_ensemble(artifacts_dir: str | Path, run: str, ensemble_json: str | Path | None = None,
                  device: str = "auto", batch_size: int = 64) -> Ensemble:
    """The ensemble an earlier infer recorded in ensemble.json (default: the one beside run `run`'s
    submission), its runs read from `artifacts_dir` wherever they are now (the artifacts may have moved
    since, e.g. to a Kaggle dataset)."""
    path = Path(ensemble_json) if ensemble_json else run_dir(artifacts_dir, run).root / "ensemble.json"
    spec = dataclasses.replace(EnsembleSpec.load(path), artifacts_dir=str(artifacts_dir))
    return Ensemble.load(spec, device, batch_size)
