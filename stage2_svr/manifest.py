"""Stage 2's manifest and file layout: what fit-svr wrote, read back by infer and score.

    stage2/fold{k}/head.joblib     the fold's head: Pipeline([scaler, balance, svr]) (stage2_svr/head.py)
    stage2/fold{k}/config.json     the fold's settings, chosen sources, C and gamma (as a number)
    stage2/fold{k}/oof.csv         the fold's out-of-fold SVR predictions
    stage2/oof_svr.csv             all folds' OOF rows
    stage2/fold{k}/head-gbdt.joblib, config-gbdt.json, oof-gbdt.csv, stage2/oof_gbdt.csv
                                   the same for another head kind (fit-svr --heads svr,gbdt)
    stage2/selection.csv           the choice's table (when anything was chosen on OOF)
    stage2/nested.csv              the nested estimate's choice per outer fold (when it ran)
    stage2/manifest.json           written last: the chosen sources, settings, files and their SHA-256
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pawcore.artifacts import load_pickle_verified
from pawcore.errors import ArtifactError, ConfigError
from pawcore.manifest import Manifest, files_of, fold_file, stage_file
from pawcore.run import RunDir
from stage1_backbone.manifest import Stage1Manifest

if TYPE_CHECKING:
    from .sources import Source

SVR = "svr"
HEAD_KINDS = (SVR, "gbdt")  # stage-2 head kinds: the SVR and the gradient-boosted trees (stage2_svr/gbdt.py)


@dataclass(frozen=True)
class Stage2Fold:
    files: dict[str, str]  # {path relative to stage2/: SHA-256}


@dataclass(frozen=True)
class Stage2Manifest(Manifest):
    STAGE = "stage2"
    COMMAND = "fit-svr"
    VERSION = 2  # 2: one head.joblib (scaler + SVR in a Pipeline) per fold

    folds: dict[int, Stage2Fold]
    stage1_manifest_sha256: str
    oof_svr_sha256: str
    features: list[str]               # the chosen sources' specs, in the order of the head's columns
    frozen: dict[str, dict]           # frozen source spec -> {weights_sha256, size, dim}
    n_features: int
    use_meta: bool
    standardize: bool
    backend: str
    select: str
    partial_stage1: dict | None = None
    # The SVR's settings (fields added after version 2; a manifest without them had C=20, gamma 'scale',
    # no balance, and chose its sources and scaler on OOF when `select` was not 'none').
    C: float = 20.0
    gamma: str = "scale"                  # the base the factor multiplies: 'scale', 'auto' or a number
    gamma_factor: float = 1.0
    epsilon: float = 0.1
    balance: bool = False
    chosen_on_oof: tuple[str, ...] = ()   # what fit-svr chose on the OOF rows: sources, scaler, balance, C, gamma
    oof_rmse: float | None = None         # the SVR head's OOF RMSE (optimistic when chosen_on_oof)
    nested_rmse: float | None = None      # its nested-CV estimate (stage2_svr/nested.py), None when not run
    nested_note: str = ""                 # why it ran or not
    # fold -> (a, b) of its recalibration a + b x score (stage2_svr/recalibrate.py); none: the identity
    recalibration: dict[int, tuple[float, float]] = dataclasses.field(default_factory=dict)
    # Heads beside the SVR (the SVR is described by the fields above): kind -> {features (specs, in column
    # order), n_features, oof_sha256, oof_rmse, recalibration {fold: (a, b)}, settings}
    heads: dict[str, dict] = dataclasses.field(default_factory=dict)

    # --- the stage's files: Stage2Manifest.head_file(run, k) etc. --------------------------------
    head_file = fold_file("head.joblib")
    fold_config_file = fold_file("config.json")
    fold_oof_file = fold_file("oof.csv")
    oof_file = stage_file("oof_svr.csv")
    selection_file = stage_file("selection.csv")
    nested_file = stage_file("nested.csv")

    @classmethod
    def head_file_of(cls, run: RunDir, fold: int, kind: str):
        """Fold `fold`'s head file of one head kind (the SVR's keeps its name of before other heads)."""
        return cls.head_file(run, fold) if kind == SVR else cls.fold_dir(run, fold) / f"head-{kind}.joblib"

    @classmethod
    def fold_config_file_of(cls, run: RunDir, fold: int, kind: str):
        return cls.fold_config_file(run, fold) if kind == SVR else cls.fold_dir(run, fold) / f"config-{kind}.json"

    @classmethod
    def fold_oof_file_of(cls, run: RunDir, fold: int, kind: str):
        return cls.fold_oof_file(run, fold) if kind == SVR else cls.fold_dir(run, fold) / f"oof-{kind}.csv"

    @classmethod
    def oof_file_of(cls, run: RunDir, kind: str):
        """All folds' OOF rows of one head kind: oof_svr.csv, oof_gbdt.csv."""
        return cls.stage_dir(run) / f"oof_{kind}.csv"

    # --- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_record(cls, run: RunDir, raw: dict[str, Any]) -> "Stage2Manifest":
        features = [str(s) for s in raw["features"]]
        # CLIP sources record more (format, mean/std, resize, prompts): kept as written
        frozen = {str(k): {**v, "weights_sha256": str(v["weights_sha256"]), "size": int(v["size"]), "dim": int(v["dim"])}
                  for k, v in raw["frozen"].items()}
        manifest = cls(run, folds={int(k): Stage2Fold(files_of(v)) for k, v in raw["folds"].items()},
                      stage1_manifest_sha256=str(raw["stage1_manifest_sha256"]), oof_svr_sha256=str(raw["oof_svr_sha256"]),
                      features=features, frozen=frozen, n_features=int(raw["n_features"]), use_meta=bool(raw["use_meta"]),
                      standardize=bool(raw["standardize"]), backend=str(raw["backend"]), select=str(raw["select"]),
                      partial_stage1=raw.get("partial_stage1"), heads=_heads(raw), **_settings(raw))
        for k in manifest.folds:
            for kind in manifest.head_kinds:
                manifest.recorded_sha256(manifest.head_file_of(run, k, kind), k)  # every fold lists its heads
        return manifest

    # --- the heads ---------------------------------------------------------------------------------
    @property
    def head_kinds(self) -> list[str]:
        """The stage-2 heads of every fold: 'svr', then the others fitted beside it ('gbdt')."""
        return [SVR, *self.heads]

    def head_features(self, kind: str) -> list[str]:
        return self.features if kind == SVR else list(self.heads[kind]["features"])

    def head_n_features(self, kind: str) -> int:
        return self.n_features if kind == SVR else int(self.heads[kind]["n_features"])

    def head_oof_rmse(self, kind: str) -> float | None:
        return self.oof_rmse if kind == SVR else self.heads[kind].get("oof_rmse")

    @property
    def svr_words(self) -> str:
        """'C=300, gamma=1/8 x scale, epsilon 0.1, scaler off, balance on' for reports."""
        from .head import factor_words

        return (f"C={self.C:g}, gamma={factor_words(self.gamma_factor)} x {self.gamma}, epsilon {self.epsilon:g}, scaler "
                f"{'on' if self.standardize else 'off'}, balance {'on' if self.balance else 'off'}")

    @property
    def sources(self) -> list[Source]:
        """The SVR head's sources, in its column order."""
        return self.head_sources(SVR)

    def head_sources(self, kind: str) -> list[Source]:
        """A head's sources, in its column order; CLIP :prompts sources carry the recorded prompts."""
        return [self._source(spec) for spec in self.head_features(kind)]

    @property
    def all_sources(self) -> list[Source]:
        """Every source any head uses, each once."""
        specs = dict.fromkeys(spec for kind in self.head_kinds for spec in self.head_features(kind))
        return [self._source(spec) for spec in specs]

    def _source(self, spec: str) -> Source:
        import dataclasses as dc

        from .sources import parse_source  # timm: only for the commands that run models

        source = parse_source(spec)
        if source.prompts:
            prompts = self.frozen.get(spec, {}).get("prompts")
            if not prompts:
                raise ArtifactError(f"{self.path(self.run)} names {spec!r} but not its prompts. Re-fit: "
                                    f"{self.remake(self.run)}.")
            source = dc.replace(source, prompt_texts=tuple(str(p) for p in prompts))
        return source

    def calibrate(self, fold: int, scores, kind: str = SVR):
        """Fold `fold`'s head scores (1..100) through its recalibration, as fit-svr wrote its OOF."""
        from .recalibrate import IDENTITY, apply_map

        maps = self.recalibration if kind == SVR else self.heads[kind].get("recalibration", {})
        return apply_map(scores, maps.get(fold, IDENTITY))

    def load_head(self, fold: int, kind: str = SVR):
        """Fold `fold`'s fitted head of one kind, unpickled only if its bytes match the recorded SHA-256."""
        path = self.head_file_of(self.run, fold, kind)
        return load_pickle_verified(path, self.recorded_sha256(path, fold))

    # --- checks against what is here today ---------------------------------------------------------
    def check_built_on(self, stage1: Stage1Manifest) -> None:
        """Stage 2 was fitted on today's stage 1 (same manifest, same folds)."""
        run = self.run
        if self.stage1_manifest_sha256 != stage1.digest():
            raise ArtifactError(f"Stage 1 of run {run.run!r} changed after fit-svr ran. Run {self.remake(run)}.")
        if set(stage1.folds) != set(self.folds):
            raise ArtifactError(f"Stage 1 has folds {sorted(stage1.folds)} but stage 2 has {sorted(self.folds)}. "
                                f"Run {self.remake(run)}.")

    def check_frozen_unchanged(self) -> None:
        """Refuse a stage 2 whose frozen source is missing here or has other weights than it was fitted on."""
        from .frozen import weights_sha256

        refit = self.remake(self.run)
        for s in self.all_sources:
            if s.tuned:
                continue
            try:
                sha = weights_sha256(s)
            except ConfigError as e:
                raise ArtifactError(f"Stage 2 of run {self.run.run!r} was fitted on the frozen source {s.spec!r}, "
                                    f"which is not available here: {e} Or re-fit stage 2 without it: {refit}.") from None
            if sha != self.frozen[s.spec]["weights_sha256"]:
                bring = (f"Bring back the file it was fitted with (SHA-256 {self.frozen[s.spec]['weights_sha256']}) "
                         f"to {s.path}" if s.path else "Install the version it was fitted with")
                raise ArtifactError(f"Stage 2 of run {self.run.run!r} was fitted on {s.spec!r} with weights "
                                    f"{self.frozen[s.spec]['weights_sha256'][:12]}..., but the weights here are "
                                    f"{sha[:12]}... (another version: the file changed). {bring}, "
                                    f"or re-fit: {refit}.")


def _heads(raw: dict[str, Any]) -> dict[str, dict]:
    """The heads beside the SVR (none in manifests written before there were others)."""
    heads = {}
    for kind, record in raw.get("heads", {}).items():
        if kind not in HEAD_KINDS or kind == SVR:
            raise ValueError(f"unknown head kind {kind!r} (known: {list(HEAD_KINDS)})")
        heads[str(kind)] = {**record, "features": [str(s) for s in record["features"]],
                            "n_features": int(record["n_features"]), "oof_sha256": str(record["oof_sha256"]),
                            "recalibration": {int(k): (float(a), float(b))
                                              for k, (a, b) in record.get("recalibration", {}).items()}}
    return heads


def _settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The SVR settings of a manifest, with what older files (without these fields) did."""
    old_choice = {"auto": ("sources", "scaler"), "sources": ("sources",)}.get(raw["select"], ())
    nested = raw.get("nested_rmse")
    oof = raw.get("oof_rmse")
    return dict(C=float(raw.get("C", 20.0)), gamma=str(raw.get("gamma", "scale")),
                gamma_factor=float(raw.get("gamma_factor", 1.0)), epsilon=float(raw.get("epsilon", 0.1)),
                balance=bool(raw.get("balance", False)),
                chosen_on_oof=tuple(str(c) for c in raw.get("chosen_on_oof", old_choice)),
                oof_rmse=None if oof is None else float(oof), nested_rmse=None if nested is None else float(nested),
                nested_note=str(raw.get("nested_note", "")),
                recalibration={int(k): (float(a), float(b)) for k, (a, b) in raw.get("recalibration", {}).items()})
