"""A stage 1 with folds missing is refused by fit-svr and infer, unless --allow-partial (then recorded)."""
from __future__ import annotations

import json
import re
import shlex

import pandas as pd
import pytest

from inference.config import InferConfig
from inference.infer import infer
from pawcore.errors import ArtifactError
from pawcore.metrics import rmse
from pipeline import main
from stage1_backbone.config import TrainConfig
from stage1_backbone.train import train_backbone
from stage2_svr.config import SVRConfig
from stage2_svr.fit import fit_svr

from .conftest import TINY


def test_partial_stage1_is_refused_then_allowed_and_recorded(tiny_data, tmp_path):
    art = str(tmp_path)
    # Fold 1 of 2 trained, as when one of two fold jobs has not run yet; a non-default setting (lr) that
    # the command for the missing fold must repeat.
    train_backbone(TrainConfig(data_dir=str(tiny_data), artifacts_dir=art, **{**TINY, "epochs": 1, "lr": 1e-3},
                               folds="1"))

    with pytest.raises(ArtifactError, match=r"1 of 2 folds trained \(\[1\]\); fold\(s\) \[0\] are missing") as err:
        fit_svr(SVRConfig(artifacts_dir=art, svr_backend="sklearn"))
    assert "--allow-partial" in str(err.value)
    assert not (tmp_path / "default/stage2/manifest.json").exists()

    fit_svr(SVRConfig(artifacts_dir=art, svr_backend="sklearn", allow_partial=True))
    stage2 = json.loads((tmp_path / "default/stage2/manifest.json").read_text())
    assert stage2["partial_stage1"] == {"folds": [1], "missing": [0], "n_folds": 2}
    # Selection scored the trained fold's rows only, the same rows the saved SVR's OOF covers.
    oof = pd.read_csv(tmp_path / "default/stage2/oof_svr.csv")
    chosen = pd.read_csv(tmp_path / "default/stage2/selection.csv").iloc[-1]
    assert set(oof["fold"]) == {1} and chosen["step"] == "chosen"
    assert chosen["oof_rmse"] == pytest.approx(rmse(oof["pred_raw"], oof["target"]), abs=1e-3)  # libsvm tolerance

    with pytest.raises(ArtifactError, match=r"(?s)fold\(s\) \[0\] are missing.*--allow-partial to infer"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=art))
    assert not (tmp_path / "default/submission.csv").exists()
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=art, allow_partial=True))
    report = (tmp_path / "default/report.md").read_text()
    assert "PARTIAL stage 1 (`--allow-partial`): folds [1] of 2, fold(s) [0] missing" in report

    # The command the message gives trains exactly the missing fold with the same settings: after it,
    # stage 1 is complete and fit-svr goes on without --allow-partial.
    command = re.search(r"python pipeline\.py train-backbone [^\n]*", str(err.value)).group(0)
    args = shlex.split(command)[2:]
    assert args[args.index("--folds") + 1] == "0" and args[args.index("--lr") + 1] == "0.001"
    assert main(args) == 0
    stage1 = json.loads((tmp_path / "default/stage1/manifest.json").read_text())
    assert sorted(stage1["folds"]) == ["0", "1"] and stage1["complete"]
    fit_svr(SVRConfig(artifacts_dir=art, svr_backend="sklearn"))
    assert json.loads((tmp_path / "default/stage2/manifest.json").read_text())["partial_stage1"] is None
