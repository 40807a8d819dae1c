"""Data validation: each bad input gets a DataError naming the file/row and the fix, before any training."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pawcore.data import META_COLS, read_split
from pawcore.errors import DataError
from pawcore.images import cached_images, load_rgb
from workflows.synthetic import make_dataset

from .conftest import OXFORD, REAL_LABELS, needs_shared


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "d", n_train=6, n_test=2, seed=3, min_side=30, max_side=50)


def edit_train(data, fn):
    frame = pd.read_csv(data / "train.csv", dtype={"Id": str})
    fn(frame).to_csv(data / "train.csv", index=False)


def test_valid_data_loads_with_meta(data):
    split = read_split(data, "train", require_meta=True)
    assert len(split.ids) == 6 and split.has_meta
    assert split.targets().dtype == np.float32 and split.meta().shape == (6, 12)
    assert all(p.is_file() for p in split.image_paths)


def test_missing_column(data):
    edit_train(data, lambda f: f.drop(columns=["Pawpularity"]))
    with pytest.raises(DataError, match=r"missing column\(s\) \['Pawpularity'\]"):
        read_split(data, "train")


def test_missing_meta_columns_only_matter_with_use_meta(data):
    edit_train(data, lambda f: f.drop(columns=META_COLS))
    assert len(read_split(data, "train").ids) == 6
    with pytest.raises(DataError, match="without --use-meta"):
        read_split(data, "train", require_meta=True)


def test_duplicate_ids(data):
    edit_train(data, lambda f: pd.concat([f, f.iloc[[1]]]))
    with pytest.raises(DataError, match=r"line 8: duplicate Id .* \(first on line 3\)"):
        read_split(data, "train")


@pytest.mark.parametrize("bad, message", [
    ("abc", "is not a number"),
    ("", "is not a number"),      # empty cell -> NaN
    ("0", "out of range"),
    ("101", "out of range"),
])
def test_bad_targets(data, bad, message):
    def corrupt(f):
        f["Pawpularity"] = f["Pawpularity"].astype(object)
        f.loc[2, "Pawpularity"] = bad
        return f
    edit_train(data, corrupt)
    with pytest.raises(DataError, match=rf"train.csv line 4 .*Pawpularity.*{message}"):
        read_split(data, "train")


def test_all_problems_reported_at_once(data):
    def corrupt(f):
        f["Pawpularity"] = f["Pawpularity"].astype(object)
        f.loc[0, "Pawpularity"] = "x"
        f.loc[3, "Pawpularity"] = 500
        return f
    edit_train(data, corrupt)
    (data / "train" / f"{pd.read_csv(data / 'train.csv', dtype=str).Id[5]}.jpg").unlink()
    with pytest.raises(DataError, match="3 problem") as err:
        read_split(data, "train")
    assert "line 2" in str(err.value) and "line 5" in str(err.value) and "line 7" in str(err.value)


def test_missing_image_file(data):
    first = pd.read_csv(data / "train.csv", dtype=str).Id[0]
    (data / "train" / f"{first}.jpg").unlink()
    with pytest.raises(DataError, match=rf"line 2: image .*{first}.jpg not found"):
        read_split(data, "train")


def test_missing_csv_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="train.csv not found.*competition layout"):
        read_split(tmp_path, "train")


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "not-an-image"])
def test_undecodable_images_are_all_named(data, tmp_path, damage):
    split = read_split(data, "train")
    bad = split.image_paths[1]
    raw = bad.read_bytes()
    bad.write_bytes({"zero-byte": b"", "truncated": raw[: len(raw) // 3], "not-an-image": b"hello" * 50}[damage])
    with pytest.raises(DataError, match=rf"1 problem\(s\) in the train images:\n  .*{bad.name}: cannot be decoded.*remove its row"):
        cached_images(split.image_paths, 32, tmp_path / "cache", "train")
    assert not list((tmp_path / "cache").glob("*.npy")), "a failed cache build must leave no file behind"


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_any_mode_is_read_as_rgb(tmp_path, mode):
    rgb = Image.new("RGB", (40, 30), (200, 40, 10))
    img = rgb.convert(mode) if mode != "I;16" else Image.fromarray(np.full((30, 40), 40000, np.uint16))
    path = _save(img, tmp_path / ("x.jpg" if mode == "CMYK" else "x.png"), **({"quality": 95} if mode == "CMYK" else {}))
    out = load_rgb(path)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    if mode in ("RGBA", "CMYK"):
        assert abs(int(out[0, 0, 0]) - 200) < 8 and out[0, 0, 1] < 60
    if mode == "I;16":
        assert out.max() > 200, "16-bit images are scaled to 8 bits, not clipped"


def test_exif_rotated_photo_is_read_upright(tmp_path):
    # Stored landscape (60x20) with EXIF orientation 6 (rotate 90 CW to display): upright it is portrait.
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored left edge -> top once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_rgb(path)
    assert out.shape == (60, 20, 3)
    assert out[2, 10, 0] > 200 and out[-3, 10, 2] > 200


def test_reduced_decode_resizes_exactly(tmp_path):
    path = _save(Image.new("RGB", (1000, 700), (10, 200, 30)), tmp_path / "big.jpg", quality=90)
    out = load_rgb(path, size=64)
    assert out.shape == (64, 64, 3) and abs(int(out[32, 32, 1]) - 200) < 6


@needs_shared(OXFORD)
def test_reference_photos_load():
    split = read_split(OXFORD, "train")
    assert len(split.ids) == 320 and not split.has_meta
    assert 1 <= split.targets().min() and split.targets().max() <= 100
    assert len(read_split(OXFORD, "test").ids) == 50


@needs_shared(REAL_LABELS)
def test_real_competition_schema(tmp_path):
    """The real train.csv's columns and values pass validation (images absent: only those errors)."""
    shutil.copy(REAL_LABELS, tmp_path / "train.csv")
    with pytest.raises(DataError) as err:
        read_split(tmp_path, "train", require_meta=True)
    assert "9912 problem(s)" in str(err.value) and "not found" in str(err.value)
    assert "not a number" not in str(err.value) and "out of range" not in str(err.value)
