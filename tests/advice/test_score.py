"""`pipeline.py score`: the submission's scores replayed, per-photo errors, crop boxes, heatmap."""
from __future__ import annotations

import json
import shutil
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from advice.crop import MIN_GAIN, candidate_boxes, suggest_crop
from advice.heatmap import MAP_SIDE, occlusion_map
from advice.photos import Photo, PhotoError, open_photo, read_photos
from advice.score import score_photos
from inference.ensemble import load_ensemble
from pawcore.errors import ConfigError
from pipeline import main


def _score_json(capsys, *argv) -> tuple[int, list[dict]]:
    code = main(["score", *map(str, argv), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_score_reproduces_the_submission(advice_run, test_photos, capsys):
    art, sub = advice_run
    code, rows = _score_json(capsys, *test_photos, "--artifacts-dir", art)
    assert code == 0 and [r["path"] for r in rows] == [str(p) for p in test_photos]
    expected = sub.set_index("Id")["Pawpularity"]
    got = np.array([r["score"] for r in rows])
    np.testing.assert_allclose(got, expected.loc[[p.stem for p in test_photos]].to_numpy(), atol=1e-4)
    # The heads are reported too and blend as ensemble.json says (0.3 x NN + 0.7 x SVR).
    blend = np.clip([0.3 * r["nn"] + 0.7 * r["svr"] for r in rows], 1, 100)
    np.testing.assert_allclose(got, blend, atol=1e-5)
    assert np.ptp(got) > 0  # different photos, different scores


def test_score_without_infer_names_the_command(tiny_run, test_photos, capsys):
    assert main(["score", str(test_photos[0]), "--artifacts-dir", str(tiny_run)]) == 2
    assert "pipeline.py infer" in capsys.readouterr().err


def test_bad_photos_get_their_own_error_and_the_rest_are_scored(advice_run, test_photos, tmp_path, capsys):
    art, sub = advice_run
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(test_photos[0].read_bytes()[:300])
    missing = tmp_path / "missing.jpg"
    code, rows = _score_json(capsys, empty, test_photos[1], text, truncated, missing, "--artifacts-dir", art)
    assert code == 1
    assert [("error" in r) for r in rows] == [True, False, True, True, True]
    assert "0 bytes" in rows[0]["error"] and "cannot be decoded" in rows[2]["error"]
    assert "cannot be decoded" in rows[3]["error"] and "cannot be read" in rows[4]["error"]
    assert rows[1]["score"] == pytest.approx(sub.set_index("Id").loc[test_photos[1].stem, "Pawpularity"], abs=1e-4)


def test_exif_rotation_is_applied_before_scoring_and_boxes(advice_run, test_photos, tmp_path, capsys):
    art, _ = advice_run
    upright = Image.open(test_photos[2]).convert("RGB")
    # Stored sideways with EXIF orientation 6 ("rotate 90 clockwise to view"): shown exactly as `upright`.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated, plain = tmp_path / "rotated.png", tmp_path / "plain.png"
    stored.save(rotated, exif=exif)
    upright.save(plain)
    code, rows = _score_json(capsys, rotated, plain, "--artifacts-dir", art, "--suggest-crop")
    assert code == 0
    assert (rows[0]["width"], rows[0]["height"]) == upright.size != stored.size
    assert rows[0]["score"] == pytest.approx(rows[1]["score"], abs=1e-5)
    assert rows[0]["crop"]["box"] == rows[1]["crop"]["box"]


def test_candidate_boxes_lie_inside_and_keep_min_crop():
    for w, h in ((640, 480), (480, 640), (1000, 250), (37, 91)):
        boxes = candidate_boxes(w, h, min_crop=0.5)
        aspects = {a for _, a in boxes}
        assert len(boxes) >= 4  # a 2 x 2 grid at least (a panorama has only its own ratio)
        assert "same as photo" in aspects or (w, h) == (640, 480)  # 640x480 is 4:3: its boxes are named 4:3
        for (x0, y0, x1, y1), _ in boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert x1 - x0 >= 0.5 * w - 1 and y1 - y0 >= 0.5 * h - 1
            assert (x0, y0, x1, y1) != (0, 0, w, h)
    assert {a for _, a in candidate_boxes(640, 480)} == {"1:1", "4:5", "4:3"}
    # No other ratio keeps half the width and half the height of a 4:1 panorama.
    assert {a for _, a in candidate_boxes(1000, 250)} == {"same as photo"}
    with pytest.raises(ConfigError, match="--min-crop"):
        candidate_boxes(10, 10, min_crop=0)


class SubjectScorer:
    """Stands in for an Ensemble of `folds` folds: each fold scores the share of the photo a red subject
    fills (0 when the frame cuts it), plus its own noise of `noise` points that depends on the pixels.
    With signal=False the subject is ignored and only the noise is left: no framing can help.

    It sees only the squashed pixels the crop search sends it, so a best box that contains the subject
    shows the box reported is the box whose pixels were scored."""

    size = 64

    def __init__(self, folds: int = 5, noise: float = 1.0, signal: bool = True, seed: int = 0):
        self.folds, self.noise, self.signal, self.seed = folds, noise, signal, seed

    def fold_scores(self, images) -> np.ndarray:
        px = images.pixels(self.size)
        red = (px[..., 0] > 150) & (px[..., 1] < 100)
        cut = red[:, 0, :].any(1) | red[:, -1, :].any(1) | red[:, :, 0].any(1) | red[:, :, -1].any(1)
        share = np.where(cut, 0.0, 100 * red.mean((1, 2))) if self.signal else np.zeros(len(px))
        # Noise drawn from the pixels (the same box always gets the same noise), independent across folds.
        noise = [np.random.default_rng([self.seed, zlib.crc32(img.tobytes())]).normal(0, self.noise, self.folds)
                 for img in px]
        return 30 + share[None, :] + np.array(noise).T

    @staticmethod
    def final(fold_scores: np.ndarray) -> np.ndarray:
        return np.clip(fold_scores.mean(axis=0), 1, 100)


def _photo_with_subject(width: int, height: int, centre: tuple[int, int], radius: int) -> Photo:
    rgb = np.full((height, width, 3), 128, np.uint8)
    cv2.circle(rgb, centre, radius, (230, 20, 20), thickness=-1)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    return open_photo("subject.png", png.tobytes())


@pytest.mark.parametrize("min_crop", [0.5, 0.7])
def test_crop_is_suggested_when_framing_truly_raises_the_score(min_crop):
    """Catches a crop search whose reported box is not the region it scored (x/y swapped in
    `crop_pixels`, a box off the position grid, argmin for argmax), one that drops --min-crop, and a
    held-out gain that cannot see a real gain (a pick judged against the wrong candidate)."""
    photo = _photo_with_subject(400, 300, centre=(320, 230), radius=40)  # bottom right, 4% of the photo
    crop = suggest_crop(SubjectScorer(), photo, min_crop=min_crop)
    assert crop.suggested and crop.box == crop.best_box != crop.photo_box
    x0, y0, x1, y1 = crop.box
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    assert x1 - x0 >= min_crop * 400 - 1 and y1 - y0 >= min_crop * 300 - 1
    assert x0 <= 280 and y0 <= 190 and x1 >= 360 and y1 >= 270, f"{crop.box} cuts the subject"
    # The true gain is the subject's share of the box minus its 4% share of the photo (in points).
    true_gain = 100 * np.pi * 40 ** 2 / ((x1 - x0) * (y1 - y0)) - 100 * np.pi * 40 ** 2 / (400 * 300)
    # Each half may pick a slightly larger box than the best one: the held-out gain is at most its gain.
    assert MIN_GAIN < crop.gain < true_gain + 1 and crop.gain > 0.5 * true_gain and crop.gain_sd < 3
    # The tighter min_crop allows, the larger the subject's share: 0.5 must beat 0.7's best box.
    if min_crop == 0.5:
        assert (x1 - x0) * (y1 - y0) < 0.7 * 400 * 0.7 * 300


def test_no_crop_is_suggested_when_framing_cannot_help():
    """Catches a gain judged by the folds that picked the crop (the winner of ~60 noisy scores always
    beats the photo): here every score is noise, so the ensemble's favourite looks better than the photo
    while the held-out gain says it is not, and the advice is to keep the photo."""
    photo = _photo_with_subject(400, 300, centre=(200, 150), radius=40)
    crops = [suggest_crop(SubjectScorer(noise=3.0, signal=False, seed=seed), photo) for seed in range(40)]
    optimistic = np.array([c.best_score - c.photo_score for c in crops])
    assert optimistic.mean() > MIN_GAIN  # what reporting the favourite's own score would have claimed
    assert abs(np.mean([c.gain for c in crops])) < 1
    assert sum(c.suggested for c in crops) <= 2  # the rule's false alarms: rare (a 2.5% test)
    assert all(c.box == c.photo_box == (0, 0, 400, 300) for c in crops if not c.suggested)


def test_the_whole_photo_scores_exactly_its_score_among_the_candidates(advice_run, test_photos, tmp_path):
    """Catches the photo and its crops decoded differently (e.g. JPEG draft mode for the photo, a full
    decode for the crops): on a large JPEG the whole-photo candidate then scores apart from the photo."""
    art, _ = advice_run
    ensemble = load_ensemble(art, "default", device="cpu")
    big = tmp_path / "big.jpg"
    Image.open(test_photos[0]).convert("RGB").resize((1200, 900), Image.BICUBIC).save(big, quality=90)
    photo = read_photos([big])[0]
    crop = suggest_crop(ensemble, photo)
    assert crop.photo_score == pytest.approx(score_photos(ensemble, [photo])[0].score, abs=1e-4)
    assert crop.gain is not None and crop.n_candidates > 10


def test_suggested_crop_rescores_the_same_and_obeys_min_crop_on_the_command_line(advice_run, test_photos,
                                                                                tmp_path, capsys):
    """Catches `score --min-crop` not reaching the search, and a reported crop score that is not the
    score of the box's pixels (saved and scored again as a photo)."""
    art, _ = advice_run
    pngs = []
    for p in test_photos[:4]:  # lossless copies, so a saved crop holds exactly the searched pixels
        pngs.append(tmp_path / f"{p.stem}.png")
        Image.open(p).save(pngs[-1])
    code, rows = _score_json(capsys, *pngs, "--artifacts-dir", art, "--suggest-crop", "--min-crop", "0.7")
    assert code == 0
    crops = []
    for r, path in zip(rows, pngs):
        assert r["crop"]["box"] == (r["crop"]["best_box"] if r["crop"]["suggested"] else [0, 0, r["width"], r["height"]])
        x0, y0, x1, y1 = r["crop"]["best_box"]
        assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
        assert x1 - x0 >= 0.7 * r["width"] - 1 and y1 - y0 >= 0.7 * r["height"] - 1
        crops.append(tmp_path / f"crop-{path.name}")
        Image.open(path).crop((x0, y0, x1, y1)).save(crops[-1])
    assert any(r["crop"]["best_aspect"] != "photo" for r in rows)  # the search finds something on some photo
    # Scoring the saved crop as a photo gives the crop's reported score: the box means what it says.
    _, again = _score_json(capsys, *crops, "--artifacts-dir", art)
    np.testing.assert_allclose([a["score"] for a in again], [r["crop"]["best_score"] for r in rows], atol=1e-4)


def test_heatmap_marks_regions_that_move_the_score(advice_run, test_photos, tmp_path, capsys):
    art, _ = advice_run
    ensemble = load_ensemble(art, "default", device="cpu")
    photo = read_photos([test_photos[3]])[0]
    heat = occlusion_map(ensemble, photo, window=1 / 4, stride=1 / 4)  # 4 x 4 disjoint windows
    values = heat.values
    assert values.shape == (MAP_SIDE, MAP_SIDE) and np.isfinite(values).all() and np.abs(values).max() > 0
    # Occluding the reddest window must lower the score more than occluding the bluest one.
    base = score_photos(ensemble, [photo])[0].score
    assert heat.unoccluded == pytest.approx(base, abs=1e-4)
    size = 32  # the tiny run's input size: a 32 x 32 PNG is scored as these very pixels
    pixels = photo.rgb(size)
    def occluded_score(yx):
        (y0, y1), (x0, x1) = ((round(int(v) * 4 // MAP_SIDE * size / 4), round((int(v) * 4 // MAP_SIDE + 1) * size / 4))
                              for v in yx)
        img = pixels.copy()
        img[y0:y1, x0:x1] = photo.rgb().reshape(-1, 3).mean(0).round()
        png = tmp_path / f"occ{y0}-{x0}.png"
        cv2.imwrite(str(png), img[:, :, ::-1])
        return score_photos(ensemble, [read_photos([png])[0]])[0].score
    top = occluded_score(np.unravel_index(values.argmax(), values.shape))
    bottom = occluded_score(np.unravel_index(values.argmin(), values.shape))
    assert base - top == pytest.approx(values.max(), abs=1e-3)
    assert base - top > base - bottom
    # The command line writes the overlay PNG at the photo's upright size.
    code = main(["score", str(test_photos[3]), "--artifacts-dir", str(art), "--heatmap", str(tmp_path / "h")])
    assert code == 0
    written = cv2.imread(str(tmp_path / "h" / f"{test_photos[3].stem}-heatmap.png"))
    assert written.shape[:2] == (photo.height, photo.width)


def test_open_photo_limits():
    assert isinstance(open_photo("x", b""), PhotoError)
    ok, buf = cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))
    photo = open_photo("y", buf.tobytes())
    assert isinstance(photo, Photo) and (photo.width, photo.height) == (30, 40)
    big = open_photo("z", buf.tobytes(), max_pixels=1000)
    assert isinstance(big, PhotoError) and "megapixels" in big.error


def test_heatmap_scores_exactly_the_pixels_of_every_size(advice_run, tiny_data, test_photos, tmp_path):
    """Catches a heatmap computed at one size and resized for a run or source of another size: its
    unoccluded copy then scores apart from the photo. The ensemble mixes the tuned network at 32 px with
    a frozen source at 48 px."""
    from inference.config import InferConfig
    from inference.infer import infer
    from stage2_svr.config import SVRConfig
    from stage2_svr.fit import fit_svr

    art = tmp_path / "artifacts"
    shutil.copytree(advice_run[0], art)
    fit_svr(SVRConfig(artifacts_dir=str(art), svr_backend="sklearn", features="tuned,tf_efficientnet_lite0@48",
                      select="none", C="20", nested="off", recalibrate="off"))
    infer(InferConfig(data_dir=str(tiny_data), artifacts_dir=str(art), blend="0.5"))
    ensemble = load_ensemble(art, "default", device="cpu")
    big = tmp_path / "big.jpg"
    Image.open(test_photos[1]).convert("RGB").resize((640, 480), Image.BICUBIC).save(big, quality=90)
    photos = read_photos([big, test_photos[2]])
    for photo, scores in zip(photos, score_photos(ensemble, photos)):
        heat = occlusion_map(ensemble, photo, window=1 / 2, stride=1 / 2)
        assert heat.unoccluded == pytest.approx(scores.score, abs=1e-4)
        assert np.abs(heat.values).max() > 0


def test_occlusion_windows_cover_the_same_part_of_the_photo_in_every_resize_mode():
    """Catches windows laid on each model's square as if it were the whole photo: in crop mode (every CLIP
    source) the square is the photo's central part, in pad mode it has borders, so a window would grey
    different parts of the photo for different models and the map would mix them."""
    from advice.heatmap import OccludedPhoto

    rng = np.random.default_rng(0)
    ok, png = cv2.imencode(".png", rng.integers(0, 256, (200, 400, 3), dtype=np.uint8))
    photo = open_photo("wide.png", png.tobytes())  # 400 x 200: the crop-mode square is x in [100, 300)
    left, second = (0.0, 0.0, 1.0, 0.25), (0.0, 0.25, 1.0, 0.5)  # (y0, x0, y1, x1) fractions of the photo
    crop = OccludedPhoto(photo, [left, second]).pixels(64, "crop")
    np.testing.assert_array_equal(crop[0], photo.rgb(64, "crop"))
    np.testing.assert_array_equal(crop[1], crop[0])  # the left quarter is not in the square at all
    changed = np.any(crop[2] != crop[0], axis=(0, 2))  # columns of the square that the window greyed
    assert changed[:30].all() and not changed[34:].any()  # photo x in [100, 200) = the square's left half
    pad = OccludedPhoto(photo, [left]).pixels(64, "pad")  # the photo fills rows 16..47, black above and below
    rows = np.any(pad[1] != pad[0], axis=(1, 2))
    cols = np.any(pad[1] != pad[0], axis=(0, 2))
    assert rows[17:47].all() and not rows[:16].any() and not rows[48:].any()
    assert cols[:15].all() and not cols[17:].any()
