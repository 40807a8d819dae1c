"""Stage 1's manifest and file layout: what train-backbone wrote, read back by every later stage.

    stage1/fold{k}/model.safetensors   the fold's weights (safetensors: loading runs no code)
    stage1/fold{k}/config.json         what rebuilds the model (backbone, size, mean/std), never today's defaults
    stage1/fold{k}/done.json           written when the fold finished: its settings and files
    stage1/fold{k}/oof.csv             the fold's out-of-fold NN predictions
    stage1/oof_nn.csv                  all folds' OOF rows
    stage1/manifest.json               written last: the folds assembled, their files' SHA-256

A stage 1 with folds missing (say 2 of 5 fold jobs finished) is refused downstream unless the user
passes --allow-partial; then what was used is recorded (stage-2 manifest, report.md).
"""
from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pawcore.artifacts import read_json_object
from pawcore.errors import ArtifactError
from pawcore.manifest import Manifest, files_of, fold_file, stage_file
from pawcore.run import RunDir

if TYPE_CHECKING:
    from .model import PawpularityNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage1Fold:
    files: dict[str, str]      # {path relative to stage1/: SHA-256}
    val_rmse: float
    checkpoint: str = "best"


@dataclass(frozen=True)
class Stage1Manifest(Manifest):
    STAGE = "stage1"
    COMMAND = "train-backbone"
    VERSION = 1

    folds: dict[int, Stage1Fold]
    n_folds: int
    complete: bool
    data_dir: str
    folds_csv_sha256: str
    oof_nn_sha256: str
    model: dict[str, Any]          # the first fold's model config (config.json "model"): same for every fold
    mean_baseline: dict[str, float]
    checkpoint: str = "best"
    folds_from: str | None = None

    # --- the stage's files: Stage1Manifest.weights_file(run, k) etc. ------------------------------
    weights_file = fold_file("model.safetensors")
    fold_config_file = fold_file("config.json")
    done_file = fold_file("done.json")
    fold_oof_file = fold_file("oof.csv")
    oof_file = stage_file("oof_nn.csv")
    lock_file = fold_file(".lock")                        # held while the fold trains
    last_checkpoint = fold_file("checkpoints/last.ckpt")  # an interrupted fold resumes from it

    # --- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_record(cls, run: RunDir, raw: dict[str, Any]) -> "Stage1Manifest":
        folds = {int(k): Stage1Fold(files_of(v), float(v["val_rmse"]), str(v.get("checkpoint", "best")))
                 for k, v in raw["folds"].items()}
        model = dict(raw["model"])
        for key in ("backbone", "img_size", "n_meta", "feature_dim"):
            model[key]  # noqa: B018  (a KeyError names the missing key: a damaged file)
        manifest = cls(run, folds, int(raw["n_folds"]), bool(raw["complete"]), str(raw["data_dir"]),
                      str(raw["folds_csv_sha256"]), str(raw["oof_nn_sha256"]), model,
                      {str(k): float(v) for k, v in raw["mean_baseline"].items()}, str(raw.get("checkpoint", "best")),
                      raw.get("folds_from"))
        for k in manifest.folds:
            manifest.weights_sha256(k)  # every fold lists its weights (a KeyError: a damaged file)
        return manifest

    def weights_sha256(self, fold: int) -> str:
        """The fold's weights as recorded (and, after `load`, verified): the key of its feature caches."""
        return self.recorded_sha256(self.weights_file(self.run, fold), fold)

    def fold_model_config(self, fold: int) -> dict[str, Any]:
        path = self.fold_config_file(self.run, fold)
        return read_json_object(path, self.remake(self.run), required=("model",))["model"]

    def fold_model(self, fold: int) -> "PawpularityNet":
        """Fold `fold`'s network, rebuilt from its saved config and weights (eval mode)."""
        from .model import load_fold_model  # torch and timm: only for the commands that run a model

        return load_fold_model(self.fold_model_config(fold), self.weights_file(self.run, fold))

    @property
    def img_size(self) -> int:
        return int(self.model["img_size"])

    @property
    def resize(self) -> str:
        """How every stage makes this run's photos square (a run from before the option: squash)."""
        return str(self.model.get("resize", "squash"))

    @property
    def tta(self) -> tuple[str, ...]:
        """The test-time views (names, pawcore/views.py) the run's OOF of both heads averaged over."""
        return tuple(self.model.get("tta", ()))

    # --- completeness ------------------------------------------------------------------------------
    @property
    def missing_folds(self) -> list[int]:
        return sorted(set(range(self.n_folds)) - set(self.folds))

    def train_missing_command(self, missing: list[int]) -> str:
        """The train-backbone command that trains the missing folds with the finished folds' settings."""
        from .config import MODEL_KEYS, TrainConfig

        train = read_json_object(self.done_file(self.run, min(self.folds)), self.remake(self.run), ("train",))["train"]
        args = ["python", "pipeline.py", "train-backbone", "--data-dir", self.data_dir,
                "--artifacts-dir", str(self.run.artifacts_dir), "--run", self.run.run,
                "--folds", ",".join(map(str, missing))]
        for key in MODEL_KEYS:  # only what differs from today's defaults, so the command stays short
            value = train.get(key, getattr(TrainConfig, key))
            if value == getattr(TrainConfig, key):
                continue
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + key.replace("_", "-"))
            else:
                args += [flag, str(value)]
        return shlex.join(args)

    def check_complete(self, allow_partial: bool, command: str) -> dict | None:
        """None when every fold is there; with folds missing, an ArtifactError naming them and the command
        that trains them, or (--allow-partial) a record of what is used, for the manifest and report."""
        missing = self.missing_folds
        if not missing:
            return None
        present = sorted(self.folds)
        run = self.run
        if not allow_partial:
            raise ArtifactError(
                f"Stage 1 of run {run.run!r} is incomplete: {len(present)} of {self.n_folds} folds trained "
                f"({present}); fold(s) {missing} are missing. Train them (jobs still running? check `python "
                f"pipeline.py status --run {run.run} --artifacts-dir {run.artifacts_dir}`):\n  "
                f"{self.train_missing_command(missing)}\n"
                f"or pass --allow-partial to {command} to go on with folds {present} on purpose (recorded in the "
                f"manifest and the report).")
        log.warning("Stage 1 of run %r has folds %s of %d; fold(s) %s missing: going on with --allow-partial.",
                    run.run, present, self.n_folds, missing)
        return {"folds": present, "missing": missing, "n_folds": self.n_folds}
