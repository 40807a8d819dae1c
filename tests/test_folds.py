"""Folds: stratified on the binned target, seeded, made once and then only read."""
import numpy as np
import pandas as pd
import pytest

from pawcore.errors import ArtifactError, ConfigError
from pawcore.folds import load_or_make_folds, make_folds

from .conftest import REAL_LABELS, needs_shared


def frame(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"Id": [f"i{i}" for i in range(n)],
                         "Pawpularity": np.clip(rng.gamma(2.0, 18.0, n).round() + 1, 1, 100)})


def test_folds_are_stratified_and_balanced():
    train = frame()
    folds = make_folds(train, 5, seed=1)
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    target = train["Pawpularity"].to_numpy()
    for k in range(5):
        part = target[folds["fold"].to_numpy() == k]
        assert abs(part.mean() - target.mean()) < 1.0   # random folds of 100 rows drift ~2.5
        assert abs(np.percentile(part, 90) - np.percentile(target, 90)) < 4


def test_folds_are_reproducible_and_seeded():
    train = frame()
    a, b = make_folds(train, 5, seed=3), make_folds(train, 5, seed=3)
    assert a.equals(b)
    assert not a.equals(make_folds(train, 5, seed=4))


def test_folds_file_is_made_once_then_read(tmp_path):
    train = frame(60)
    path = tmp_path / "folds.csv"
    first = load_or_make_folds(path, train, 3, seed=0)
    again = load_or_make_folds(path, train, 3, seed=99)   # another seed: the file wins
    assert first["fold"].tolist() == again["fold"].tolist()
    with pytest.raises(ArtifactError, match="has 3 folds but --n-folds is 5"):
        load_or_make_folds(path, train, 5, seed=0)
    with pytest.raises(ArtifactError, match="different train.csv"):
        load_or_make_folds(path, frame(61), 3, seed=0)


def test_too_few_rows_for_the_folds():
    with pytest.raises(ConfigError, match="at least 10 training rows"):
        make_folds(frame(8), 5, seed=0)


@needs_shared(REAL_LABELS)
def test_stratification_on_the_real_target_distribution():
    real = pd.read_csv(REAL_LABELS)
    folds = make_folds(real, 5, seed=42)
    target = real["Pawpularity"].to_numpy()
    means = [target[folds["fold"].to_numpy() == k].mean() for k in range(5)]
    assert max(means) - min(means) < 0.5, means   # real target std 20.6: random folds differ by ~1
    top = [(target[folds["fold"].to_numpy() == k] == 100).sum() for k in range(5)]
    assert max(top) - min(top) <= 0.25 * np.mean(top) + 2, top   # the famous spike at 100 is spread evenly
