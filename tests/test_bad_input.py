"""Bad input of every kind: a clear DataError (file, line, fix) or a correct read, never a raw traceback."""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pawcore.check import check_data
from pawcore.data import read_split
from pawcore.errors import DataError
from pawcore.images import load_rgb
from pipeline import main
from workflows.synthetic import make_dataset


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "d", n_train=6, n_test=2, seed=4, min_side=30, max_side=50)


def rewrite(data, text_fn, name="train.csv"):
    path = data / name
    path.write_text(text_fn(path.read_text()))


def test_renamed_column(data):
    rewrite(data, lambda t: t.replace("Pawpularity", "pawpularity", 1))
    with pytest.raises(DataError, match=r"missing column\(s\) \['Pawpularity'\]; found \[.*'pawpularity'\]"):
        read_split(data, "train")


def test_extra_columns_are_ignored_with_a_warning(data, caplog):
    frame = pd.read_csv(data / "train.csv")
    frame.assign(Notes="x").to_csv(data / "train.csv", index=False)
    with caplog.at_level(logging.WARNING):
        split = read_split(data, "train")
    assert "ignoring column(s) ['Notes']" in caplog.text and "Notes" in split.frame.columns


def test_empty_csv(data):
    (data / "train.csv").write_bytes(b"")
    with pytest.raises(DataError, match="could not be read as CSV.*comma-separated UTF-8 with a header row"):
        read_split(data, "train")


def test_bom_and_crlf_csv_reads_the_same(data):
    plain = read_split(data, "train").frame
    text = (data / "train.csv").read_text()
    (data / "train.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    again = read_split(data, "train").frame
    pd.testing.assert_frame_equal(plain, again)


@pytest.mark.parametrize("bad, message", [("2", "out of range"), ("yes", "not a number"), ("", "not a number")])
def test_bad_metadata_flags(data, bad, message):
    frame = pd.read_csv(data / "train.csv", dtype=str)
    frame.loc[3, "Blur"] = bad
    frame.to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=rf"line 5 .*Blur.*{message}; valid values are 0..1|line 5 .*Blur.*{message}"):
        read_split(data, "train")


def test_images_without_a_row_are_warned_about(data, caplog):
    shutil.copy(next((data / "train").glob("*.jpg")), data / "train" / "stray.jpg")
    with caplog.at_level(logging.WARNING):
        read_split(data, "train")
    assert "1 image(s)" in caplog.text and "stray.jpg" in caplog.text


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_formats_saved_as_jpg_are_read(data, fmt):
    split = read_split(data, "train")
    Image.new("RGB", (50, 40), (10, 200, 10)).save(split.image_paths[0], format=fmt)
    assert load_rgb(split.image_paths[0]).shape == (40, 50, 3)
    pixels = read_split(data, "train").pixels(32, data / "cache")
    assert abs(int(pixels[0, 16, 16, 1]) - 200) < 8


def test_tiny_and_huge_images(data):
    split = read_split(data, "train")
    Image.new("RGB", (12, 9), (250, 0, 0)).save(split.image_paths[0], format="JPEG")
    Image.new("RGB", (6000, 5200), (0, 0, 250)).save(split.image_paths[1], format="JPEG", quality=80)
    pixels = read_split(data, "train").pixels(48, data / "cache")
    assert pixels.shape == (6, 48, 48, 3)
    assert pixels[0, 24, 24, 0] > 230 and pixels[1, 24, 24, 2] > 230


def test_non_ascii_paths_and_ids(tmp_path):
    data = make_dataset(tmp_path / "données-пёс", n_train=4, n_test=1, seed=2, min_side=30, max_side=40)
    frame = pd.read_csv(data / "train.csv", dtype=str)
    old = frame.loc[0, "Id"]
    frame.loc[0, "Id"] = "chat-été-猫"
    (data / "train" / f"{old}.jpg").rename(data / "train" / "chat-été-猫.jpg")
    frame.to_csv(data / "train.csv", index=False)
    split = read_split(data, "train")
    pixels = split.pixels(32, tmp_path / "cache")
    assert split.ids[0] == "chat-été-猫" and pixels.shape[0] == 4


def test_check_data_reports_every_problem_at_once(data, capsys):
    frame = pd.read_csv(data / "train.csv", dtype=str)
    frame.loc[0, "Pawpularity"] = "high"
    frame.to_csv(data / "train.csv", index=False)
    ids = frame["Id"].tolist()
    (data / "train" / f"{ids[1]}.jpg").write_bytes(b"")            # zero-byte
    (data / "train" / f"{ids[2]}.jpg").unlink()                     # missing
    (data / "test.csv").write_text("Id\n" + "\n".join(pd.read_csv(data / "test.csv", dtype=str)["Id"]) + "\nghost\n")
    problems = check_data(data)
    assert len(problems) == 4, problems
    assert main(["check-data", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    for needle in ("Pawpularity='high' is not a number", f"{ids[1]}.jpg: cannot be decoded",
                   f"{ids[2]}.jpg not found", "ghost.jpg not found"):
        assert needle in out


def test_the_loader_reports_csv_and_image_problems_together(data):
    frame = pd.read_csv(data / "train.csv", dtype=str)
    frame.loc[0, "Pawpularity"] = "0"
    frame.to_csv(data / "train.csv", index=False)
    (data / "train" / f"{frame.loc[4, 'Id']}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError) as err:
        read_split(data, "train")
    assert err.value.problems[0].endswith("valid values are 1..100.") and "cannot be decoded" in err.value.problems[1]
    assert not (data / "cache").exists() or not list((data / "cache").glob("*.npy"))


def test_check_data_ok(data, capsys):
    assert main(["check-data", "--data-dir", str(data), "--use-meta"]) == 0
    assert "OK" in capsys.readouterr().out


csv_text = st.one_of(
    st.lists(st.sampled_from(list('Id,"\n\r \t;0123456789.-abcé\x00') + ["Id", "Pawpularity", "Eyes", "\ufeff"]),
             max_size=80).map("".join),
    st.lists(st.lists(st.one_of(st.integers(-5, 120).map(str), st.sampled_from(["", "nan", "x", '"', "1e3", " 7"])),
                      min_size=0, max_size=4), max_size=6).map(
        lambda rows: "Id,Pawpularity\n" + "\n".join(",".join(r) for r in rows)),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def _images_for_named_ids(data_dir, csv_path) -> None:
    """An (empty) image file for every Id the CSV names, read as read_split reads it: then a readable CSV
    with valid rows really loads, and the assertions after a successful read run."""
    try:
        frame = pd.read_csv(csv_path, dtype=str, encoding="utf-8-sig", skipinitialspace=True,
                            keep_default_na=False, na_values=[""])
    except Exception:  # noqa: BLE001  (unreadable: read_split must say so; no images needed)
        return
    if "Id" not in frame.columns:
        return
    for name in frame["Id"].dropna().astype(str).str.strip():
        if name not in ("", ".", "..") and not re.search(r"[/\\\x00]", name):
            with contextlib.suppress(OSError):
                (data_dir / "train" / f"{name}.jpg").touch()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_text)
def test_malformed_csvs_give_a_frame_or_our_error(tmp_path, text):
    data_dir = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: no images left from an earlier one
    (data_dir / "train").mkdir()
    (data_dir / "train.csv").write_bytes(text.encode("utf-8", errors="surrogatepass"))
    _images_for_named_ids(data_dir, data_dir / "train.csv")
    try:
        split = read_split(data_dir, "train")
    except DataError as e:
        assert str(e) and e.problems
        return
    # Loaded: then every row is valid.
    assert len(split.frame) >= 1 and split.targets().dtype == np.float32
    assert split.frame["Pawpularity"].between(1, 100).all() and split.frame["Id"].is_unique
    assert all(i != "" for i in split.ids) and all(p.is_file() for p in split.image_paths)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,11}", fullmatch=True), st.integers(1, 100)),
                     min_size=1, max_size=8, unique_by=lambda r: r[0]))
def test_valid_csvs_load_exactly(tmp_path, rows):
    data_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    (data_dir / "train").mkdir()
    (data_dir / "train.csv").write_text("Id,Pawpularity\n" + "".join(f"{i},{y}\n" for i, y in rows))
    for i, _ in rows:
        (data_dir / "train" / f"{i}.jpg").touch()
    split = read_split(data_dir, "train")
    assert split.ids == [i for i, _ in rows]  # Ids stay strings ('1e3', '007'), in file order
    np.testing.assert_array_equal(split.targets(), np.array([y for _, y in rows], np.float32))
