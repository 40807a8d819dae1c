"""benchmarks/heldout_oxford.py's splits of the 370 labelled oxford photos (no training here)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import OXFORD, needs_shared

pytestmark = needs_shared(OXFORD)
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_oxford.py"


@pytest.fixture(scope="module")
def heldout():
    spec = importlib.util.spec_from_file_location("heldout_oxford", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pool(heldout) -> pd.DataFrame:
    return heldout.labelled_photos(OXFORD)


def test_pool_is_every_labelled_photo(pool):
    train = pd.read_csv(OXFORD / "train.csv", dtype={"Id": str})
    labels = pd.read_csv(OXFORD / "test_labels.csv", dtype={"Id": str})
    assert len(pool) == 370
    assert set(pool["Id"]) == set(train["Id"]) | set(labels["Id"])
    assert pool["Pawpularity"].notna().all()
    assert all(Path(p).is_file() for p in pool["image"])


def test_splits_are_320_50_disjoint_and_cover_only_labelled(heldout, pool):
    splits = heldout.draw_splits(pool, 5, seed=0)
    assert len(splits) == 5
    labelled = dict(zip(pool["Id"], pool["Pawpularity"]))
    for split in splits:
        train, test = set(split["train"]["Id"]), set(split["test"]["Id"])
        assert (len(split["train"]), len(split["test"])) == (320, 50)
        assert len(train) == 320 and len(test) == 50  # no photo twice
        assert not train & test
        assert train | test == set(labelled)
        for part in split.values():  # each row keeps its own label
            assert all(labelled[i] == y for i, y in zip(part["Id"], part["Pawpularity"]))


def test_splits_are_reproducible_and_differ(heldout, pool):
    first, again = heldout.draw_splits(pool, 5, seed=0), heldout.draw_splits(pool, 5, seed=0)
    for a, b in zip(first, again):
        assert a["test"]["Id"].tolist() == b["test"]["Id"].tolist()
    tests = [frozenset(s["test"]["Id"]) for s in first]
    assert len(set(tests)) == 5
    # Split i depends on seed + i only: asking for fewer splits, or starting one seed later, gives the same ones.
    assert [frozenset(s["test"]["Id"]) for s in heldout.draw_splits(pool, 2, seed=0)] == tests[:2]
    assert [frozenset(s["test"]["Id"]) for s in heldout.draw_splits(pool, 2, seed=1)] == tests[1:3]


def test_written_split_is_kaggle_layout_without_test_labels(heldout, pool, tmp_path):
    split = heldout.draw_splits(pool, 1, seed=3)[0]
    data = heldout.write_split(split, tmp_path / "split0")
    assert sorted(p.name for p in data.iterdir()) == ["test", "test.csv", "train", "train.csv"]
    assert list(pd.read_csv(data / "test.csv").columns) == ["Id"]
    train = pd.read_csv(data / "train.csv", dtype={"Id": str})
    assert list(train.columns) == ["Id", "Pawpularity"] and len(train) == 320
    for part, n in (("train", 320), ("test", 50)):
        images = sorted((data / part).iterdir())
        assert len(images) == n and all(p.is_symlink() and p.resolve().is_file() for p in images)
    labels = pd.read_csv(tmp_path / "split0" / "test_labels.csv", dtype={"Id": str})
    assert set(labels["Id"]) == set(split["test"]["Id"])
    assert heldout.write_split(split, tmp_path / "split0") == data  # a second call keeps what is there
    with pytest.raises(SystemExit, match="another split"):
        heldout.write_split(heldout.draw_splits(pool, 1, seed=4)[0], tmp_path / "split0")


def test_stage1_variants_share_the_base_run_s_folds_and_seeds(heldout, pool, tmp_path, monkeypatch):
    """Catches an ingredient row trained on other folds or seeds than the base row it is compared with (its
    train-backbone must add only the variant's flags, take --folds-from base, and feed its own stage 2),
    and a base run whose results files changed name (earlier work dirs must still resume)."""
    args = heldout.parse_args(["--splits", "1", "--epochs", "1", "--n-folds", "2", "--img-size", "32",
                               "--work", str(tmp_path), "--stage1", "mixup=--mixup 0.4"])
    assert args.stage1 == {"base": [], "mixup": ["--mixup", "0.4"]} and list(args.stage2) == ["new"]
    assert list(heldout.wanted_settings(0, args)) == ["new", "mixup.new"]
    assert "stage1" not in heldout.wanted_settings(0, args)["new"]  # the base run's record is the old one
    commands, settings = [], []
    monkeypatch.setattr(heldout, "step", lambda name, argv, log_dir: commands.append(argv) or 1.0)
    monkeypatch.setattr(heldout, "run_setting",
                        lambda data, art, label, flags, logs, source: settings.append((label, source)) or {})
    monkeypatch.setattr(heldout, "_finish", lambda split_dir, label, wanted, seconds: {"setting": label, **wanted})
    heldout.bench_split(0, heldout.draw_splits(pool, 1, seed=0)[0], args)
    base, mixup = commands
    assert base[base.index("--run") + 1] == "base" and "--folds-from" not in base
    assert mixup[mixup.index("--run") + 1] == "base-mixup" and mixup[mixup.index("--folds-from") + 1] == "base"
    assert [a for a in mixup if a not in base] == ["base-mixup", "--folds-from", "--mixup", "0.4"]
    assert settings == [("new", "base"), ("mixup.new", "base-mixup")]
    with pytest.raises(SystemExit, match="set by the benchmark"):
        heldout.parse_stage1(["longer=--epochs 9"])


def test_ingredient_rows_are_paired_differences_from_the_base_run(heldout):
    """Catches an ingredient row that compares unpaired means or the wrong sign: per split, variant minus
    base on the same photos."""
    args = heldout.parse_args(["--stage1", "ema=--ema 0.9"])

    def result(setting, split, nn, blend):
        return {"setting": setting, "split": split, "test": {"nn": nn, "blend0.5": blend, "auto": blend}}

    results = [result("new", 0, 9.0, 8.0), result("new", 1, 11.0, 10.0),
               result("ema.new", 0, 8.5, 8.25), result("ema.new", 1, 10.5, 10.25)]
    table = heldout.ingredient_table(results, args)
    ema = next(line for line in table.splitlines() if line.startswith("| ema |"))
    assert "| 9.500 ± 1.414 | -0.500 ± 0.000 | 9.250 ± 1.414 | 0.250 ± 0.000 |" in ema
    assert "`--ema 0.9`" in ema
