"""`pipeline.py serve`'s JSON API: the same scores as the submission, ranks, previews, and every bad request."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from inference.ensemble import load_ensemble
from advice.serve import Limits, create_app


@pytest.fixture(scope="module")
def client(advice_run):
    art, _ = advice_run
    app = create_app(load_ensemble(art, "default", device="cpu"), Limits(max_bytes=200_000, max_files=4))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:  # a Host the server accepts
        yield c


def _files(*items):
    return [("photos", item) for item in items]


def _image(data_url: str) -> Image.Image:
    head, b64 = data_url.split(",", 1)
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_scores_ranks_previews_and_crops(client, advice_run, test_photos):
    _, sub = advice_run
    expected = sub.set_index("Id")["Pawpularity"]
    photos = test_photos[:3]
    reply = client.post("/api/score", files=_files(*[(p.name, p.read_bytes(), "image/jpeg") for p in photos],
                                                   ("bad.jpg", b"GIF89a broken", "image/jpeg")))
    assert reply.status_code == 200
    rows = reply.json()["results"]
    assert [r["path"] for r in rows] == [p.name for p in photos] + ["bad.jpg"]
    np.testing.assert_allclose([r["score"] for r in rows[:3]], expected.loc[[p.stem for p in photos]], atol=1e-4)
    assert rows[3]["error"] == "This file is not a photo we can read (its format is GIF): use JPEG, PNG or WebP."
    assert "rank" not in rows[3]
    by_rank = sorted(rows[:3], key=lambda r: r["rank"])
    assert [r["rank"] for r in by_rank] == [1, 2, 3]
    assert by_rank[0]["score"] >= by_rank[1]["score"] >= by_rank[2]["score"]
    for r, p in zip(rows, photos):
        upright = Image.open(p)
        assert (r["width"], r["height"]) == upright.size
        preview, heat = _image(r["preview"]), _image(r["heatmap"])
        assert preview.format == "JPEG" and heat.format == "PNG" and heat.mode == "RGBA"
        assert preview.size == heat.size and abs(preview.width / preview.height - upright.width / upright.height) < 0.05
        assert np.asarray(heat)[..., 3].max() > 0  # something is highlighted
        assert set(r["why"]) == {"helps", "hurts", "text"} and r["why"]["text"].endswith(".")
        x0, y0, x1, y1 = r["crop"]["best_box"]
        assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
        assert r["crop"]["box"] == ([x0, y0, x1, y1] if r["crop"]["suggested"] else [0, 0, r["width"], r["height"]])
        assert r["crop"]["gain"] is not None and r["crop"]["gain_sd"] >= 0  # the tiny run has 2 folds: one per half


def test_crop_and_heatmap_can_be_skipped(client, test_photos):
    rows = client.post("/api/score?crop=0&heatmap=0",
                       files=_files((test_photos[0].name, test_photos[0].read_bytes(), "image/jpeg"))).json()["results"]
    assert "crop" not in rows[0] and "heatmap" not in rows[0] and rows[0]["preview"].startswith("data:image/jpeg")


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, test_photos):
    photo = (test_photos[0].name, test_photos[0].read_bytes(), "image/jpeg")
    cases = [
        (client.post("/api/score", json={"photos": ["x.jpg"]}), 415, "multipart/form-data"),
        (client.post("/api/score", files={"other": photo}), 400, "fields named 'photos'"),
        (client.post("/api/score", files=_files(*[photo] * 5)), 400, "Too many files"),
        (client.post("/api/score", files=_files(("big.jpg", b"\xff" * 300_000, "image/jpeg"))), 413, "MB limit"),
    ]
    # No Content-Length (chunked): the limit still holds while the body streams in.
    chunks = (b"x" * 50_000 for _ in range(10))
    cases.append((client.post("/api/score", content=chunks,
                              headers={"content-type": "multipart/form-data; boundary=abc"}), 413, "MB limit"))
    for reply, status, text in cases:
        assert reply.status_code == status, reply.text
        assert text in reply.json()["detail"]
    rows = client.post("/api/score?crop=0&heatmap=0", files=_files(
        ("empty.jpg", b"", "image/jpeg"), ("notes.txt", b"hello", "text/plain"),
        ("cut.jpg", photo[1][:200], "image/jpeg"), photo)).json()["results"]
    # Plain words for the page (the command line keeps the decoder's reasons: test_score.py).
    assert rows[0]["error"] == "This file is empty (0 bytes): choose the photo again."
    assert rows[1]["error"] == "This file is not a photo: use JPEG, PNG or WebP."
    assert "damaged or incomplete" in rows[2]["error"] and "Error" not in rows[2]["error"]
    assert rows[3]["score"] > 0 and rows[3]["rank"] == 1
    assert client.get("/api/health").json()["ok"] is True


def test_page_is_served_and_posts_to_the_api_it_is_served_with(client, test_photos):
    """Catches the page and the API drifting apart (a route, form field or reply key renamed on one side
    only: the page would load, then fail on every upload) and the page served as other than HTML. The
    route, method, field and keys are read from the served page's script, then exercised on the app."""
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = page.text[page.text.index("<script"):]
    calls = re.findall(r'fetch\("([^"]+)",\s*\{\s*method:\s*"(\w+)"', script)
    fields = set(re.findall(r'form\.append\("(\w+)"', script))
    assert calls and fields, "the page no longer posts a form with fetch(): update this test with it"
    photo = (test_photos[0].name, test_photos[0].read_bytes(), "image/jpeg")
    for route, method in calls:
        reply = client.request(method, route, files=[(field, photo) for field in fields])
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert set(re.findall(r"\bbody\.(\w+)", script)) - {"detail"} <= body.keys()
        row = body["results"][0]
        missing = set(re.findall(r"\br\.(\w+)", script)) - {"error"} - row.keys()
        assert not missing, f"the page reads {missing}, which the API does not send"
        assert set(re.findall(r"\br\.crop\.(\w+)", script)) <= row["crop"].keys()
