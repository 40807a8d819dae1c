"""infer: submission format and order, blend arithmetic and --blend auto, offline from copied artifacts, TTA, report."""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pandas as pd
import pytest

from inference.blend import best_weight, blend_curve
from inference.config import parse_blend
from inference.config import InferConfig
from inference.infer import infer
from pawcore.errors import ArtifactError, ConfigError
from inference.ensemble_oof import run_oof
from pawcore.run import run_dir
from pipeline import main


def test_blend_parsing():
    assert parse_blend("0.3") == 0.3 and parse_blend("auto") is None and parse_blend("1") == 1.0
    for bad in ("1.5", "-0.1", "nan", "half"):
        with pytest.raises(ConfigError, match="--blend"):
            parse_blend(bad)


def test_blend_auto_finds_the_known_best_weight():
    # Constructed OOF: target = 0.3 * nn + 0.7 * svr exactly, so the best NN weight is 0.30.
    rng = np.random.default_rng(0)
    nn, svr = rng.uniform(10, 90, 500), rng.uniform(10, 90, 500)
    oof = pd.DataFrame({"nn": nn, "svr": svr, "target": 0.3 * nn + 0.7 * svr})
    curve = blend_curve(oof)
    assert len(curve) == 101 and curve["weight"].iloc[1] == pytest.approx(0.01)
    assert best_weight(curve) == pytest.approx(0.30)
    assert curve["rmse"].min() == pytest.approx(0.0, abs=1e-9)


def test_submission_format_order_and_blend(run_copy, tiny_data):
    sub = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="1"))
    nn_only = pd.read_csv(run_copy / "default/submission.csv", dtype={"Id": str})
    svr_only = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="0", out=str(run_copy / "s0.csv")))
    half = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="0.5", out=str(run_copy / "s5.csv")))
    test_ids = pd.read_csv(tiny_data / "test.csv", dtype={"Id": str})["Id"].tolist()
    assert list(nn_only.columns) == ["Id", "Pawpularity"] and nn_only["Id"].tolist() == test_ids
    assert nn_only["Pawpularity"].between(1, 100).all() and sub["Id"].tolist() == test_ids
    np.testing.assert_allclose(half["Pawpularity"], 0.5 * nn_only["Pawpularity"] + 0.5 * svr_only["Pawpularity"], atol=1e-6)
    assert not np.allclose(nn_only["Pawpularity"], svr_only["Pawpularity"])


def test_blend_auto_is_used_for_the_submission(run_copy, tiny_data, capsys):
    auto = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="auto"))
    printed = capsys.readouterr().out
    assert "--blend auto: NN weight" in printed
    weight = float(printed.split("--blend auto: NN weight ")[1].split()[0])
    # The weight is the OOF curve's minimum, and the submission is made with it (not only reported).
    assert weight == best_weight(blend_curve(run_oof(run_dir(run_copy, "default"))))
    assert f"final = {weight:.2f} x NN" in (run_copy / "default/report.md").read_text()
    nn_only = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="1", out=str(run_copy / "n.csv")))
    svr_only = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), blend="0", out=str(run_copy / "s.csv")))
    expected = np.clip(weight * nn_only["Pawpularity"] + (1 - weight) * svr_only["Pawpularity"], 1, 100)
    np.testing.assert_allclose(auto["Pawpularity"], expected, atol=1e-6)
    on_disk = pd.read_csv(run_copy / "default/submission.csv", dtype={"Id": str})
    np.testing.assert_allclose(on_disk["Pawpularity"], expected, atol=1e-4)
    if weight != 0.5:  # the weight really changes the submission (not a fixed 50/50 blend)
        half = 0.5 * nn_only["Pawpularity"] + 0.5 * svr_only["Pawpularity"]
        assert np.abs(auto["Pawpularity"] - half).max() > 1e-3


def test_tta_changes_predictions_but_not_format(run_copy, tiny_data):
    plain = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), out=str(run_copy / "a.csv")))
    tta = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), tta=True, out=str(run_copy / "b.csv")))
    assert plain["Id"].tolist() == tta["Id"].tolist() and tta["Pawpularity"].between(1, 100).all()
    assert not np.allclose(plain["Pawpularity"], tta["Pawpularity"])
    assert len(list((run_copy / "cache/features").glob("tuned-fold*-emb-flip-*.npy"))) == 2


def test_infer_offline_from_copied_artifacts_without_training_images(run_copy, tiny_data, tmp_path):
    reference = infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy), out=str(tmp_path / "ref.csv")))
    # A fresh machine: the artifacts copied without caches, and a data dir holding only test.csv + test/.
    moved = tmp_path / "kaggle" / "artifacts"
    shutil.copytree(run_copy / "default", moved / "default")  # the run alone: the caches stay behind
    test_only = tmp_path / "kaggle" / "input"
    shutil.copytree(tiny_data / "test", test_only / "test")
    shutil.copy(tiny_data / "test.csv", test_only / "test.csv")
    sub = infer(InferConfig(data_dir=str(test_only), artifacts_dir=str(moved)))
    np.testing.assert_allclose(sub["Pawpularity"], reference["Pawpularity"], atol=1e-4)
    assert (moved / "default" / "submission.csv").is_file()


def test_report_and_plots_are_written(run_copy, tiny_data):
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))
    out = run_copy / "default"
    report = (out / "report.md").read_text()
    for name in ("oof_scatter.png", "oof_histograms.png", "blend_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
        assert f"]({name})" in report
    # The OOF table's "mean baseline" column: each row predicted by the mean target of the training rows
    # outside its fold, computed here from train.csv and folds.csv. Catches a baseline from the fold's own
    # rows (a leak), from one global mean, or mapped to the wrong fold.
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| fold | n |"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    printed = {row[0]: float(row[header.index("mean baseline")]) for row in rows}
    folds = pd.read_csv(out / "folds.csv", dtype={"Id": str}).set_index("Id")["fold"]
    train = pd.read_csv(tiny_data / "train.csv", dtype={"Id": str}).set_index("Id")["Pawpularity"]
    fold = folds.loc[train.index].to_numpy()
    baseline = np.array([train[fold != k].mean() for k in fold])
    expected = {str(k): np.sqrt(np.mean((baseline - train)[fold == k] ** 2)) for k in np.unique(fold)}
    expected["overall"] = np.sqrt(np.mean((baseline - train) ** 2))
    assert printed.keys() == expected.keys()
    for key, value in expected.items():
        assert printed[key] == pytest.approx(value, abs=6e-4), key
    # Which stage-1 weights, and that their OOF is optimistic, is said where the numbers are.
    assert "best epoch of each fold" in report and "`--checkpoint best`" in report and "optimistic" in report


def test_missing_stage2_names_the_command(run_copy, tiny_data):
    shutil.rmtree(run_copy / "default/stage2")
    with pytest.raises(ArtifactError, match="python pipeline.py fit-svr"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))


def test_tampered_svr_is_refused(run_copy, tiny_data):
    svr = run_copy / "default/stage2/fold0/head.joblib"
    svr.write_bytes(svr.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="changed since"):
        infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(run_copy)))
    assert not (run_copy / "default/submission.csv").exists()


def test_all_three_commands_end_to_end(tiny_data, tmp_path, capsys):
    art = str(tmp_path / "art")
    common = ["--artifacts-dir", art, "--run", "e2e"]
    assert main(["train-backbone", "--data-dir", str(tiny_data), *common, "--backbone", "test_efficientnet",
                 "--pretrained", "none", "--img-size", "32", "--n-folds", "2", "--epochs", "2",
                 "--batch-size", "8", "--num-workers", "0"]) == 0
    assert main(["fit-svr", *common, "--svr-backend", "sklearn"]) == 0
    assert main(["infer", "--data-dir", str(tiny_data), *common, "--blend", "0.5", "--tta"]) == 0
    sub = pd.read_csv(tmp_path / "art/e2e/submission.csv")
    assert len(sub) == 8 and sub["Pawpularity"].between(1, 100).all()
    assert "Submission:" in capsys.readouterr().out
    assert main(["infer", "--data-dir", str(tiny_data), *common, "--blend", "2"]) == 2
    assert "must lie in [0, 1]" in capsys.readouterr().err
