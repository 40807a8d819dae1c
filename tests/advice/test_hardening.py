"""Hardening of score and serve: each test names the defect it reproduces; each failed before its fix.

The serve tests make work observable instead of timing it: a spy around decoding or the models records
the order of events, or holds the one worker thread at a gate so the queue can be filled on purpose.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import EpsImagePlugin, Image

import advice.serve as serve
from advice.heatmap import Heatmap
from advice.photos import open_photo, read_photos
from inference.ensemble import load_ensemble
from pawcore.images import decode_problems, load_rgb
from pipeline import main

BASE = "http://127.0.0.1:8000"  # a Host the server accepts (it is bound to loopback)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


@pytest.fixture(scope="module")
def ensemble(advice_run):
    return load_ensemble(advice_run[0], "default", device="cpu")


def _jpeg(side: int = 64, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side * 4 // 3, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only claims its size: what a decompression bomb looks like to Image.open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b"")


class Gate:
    """Stands in for `advise` on the worker thread: records each call, holds it until opened."""

    def __init__(self):
        self.calls, self.entered, self.open = [], threading.Event(), threading.Event()

    def __call__(self, ensemble, items, **kw):
        self.calls.append([i.name for i in items])
        self.entered.set()
        assert self.open.wait(60), "the test never opened the gate"
        return [serve.Advice(i.name, error="gated") for i in items]


@pytest.fixture
def gated(monkeypatch):
    """(gate, the Worker instances created): advise replaced by a Gate, workers made visible."""
    gate, workers = Gate(), []

    class SeenWorker(serve.Worker):
        def __init__(self, *args):
            super().__init__(*args)
            workers.append(self)

    monkeypatch.setattr(serve, "advise", gate)
    monkeypatch.setattr(serve, "Worker", SeenWorker)
    yield gate, workers
    gate.open.set()


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    done = threading.Event()
    for _ in range(int(timeout * 20)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _post(client, name: str, data: bytes, results: dict, **kw) -> threading.Thread:
    def go():
        results[name] = client.post("/api/score?crop=0&heatmap=0", files=[("photos", (name, data, "image/jpeg"))], **kw)
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


# --- score --heatmap DIR that cannot be written ---------------------------------------------------

@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_unwritable_heatmap_dir_fails_before_any_work(tmp_path, monkeypatch, capsys, where):
    """`--heatmap DIR` where DIR cannot be a directory crashed after all the work, printing no scores."""
    blocker = tmp_path / "heatmaps"
    blocker.write_text("a file, not a directory")
    out = blocker if where == "a file" else blocker / "sub"

    def no_work(*args, **kw):
        raise AssertionError("the models were loaded before --heatmap was checked")
    monkeypatch.setattr("advice.score.load_ensemble", no_work)
    code = main(["score", str(tmp_path / "x.jpg"), "--artifacts-dir", str(tmp_path), "--heatmap", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--heatmap" in err and str(out) in err and "Traceback" not in err


def test_scores_are_printed_when_one_heatmap_cannot_be_written(advice_run, test_photos, tmp_path, monkeypatch, capsys):
    """one heatmap that cannot be written is that photo's error; every score is still printed."""
    art, sub = advice_run
    monkeypatch.setattr("advice.advise.occlusion_map", lambda ensemble, photo: Heatmap(np.ones((32, 32), np.float32), 0.0))
    out = tmp_path / "h"
    (out / f"{test_photos[1].stem}-heatmap.png").mkdir(parents=True)  # the second heatmap's name is taken
    code = main(["score", str(test_photos[0]), str(test_photos[1]), "--artifacts-dir", str(art),
                 "--heatmap", str(out), "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert code == 1 and [r["score"] for r in rows] == pytest.approx(
        sub.set_index("Id").loc[[p.stem for p in test_photos[:2]], "Pawpularity"].tolist(), abs=1e-4)
    assert f"{test_photos[1]}: error: heatmap not written" in captured.err
    assert (out / f"{test_photos[0].stem}-heatmap.png").is_file()


# --- heatmaps of photos sharing a stem -----------------------------------------------------------

def test_heatmaps_of_photos_sharing_a_stem_do_not_overwrite_each_other(advice_run, test_photos, tmp_path,
                                                                       monkeypatch, capsys):
    """a/x.jpg, b/x.jpg, a/x.png gave one x-heatmap.png (the last), the same path printed three times."""
    art, _ = advice_run
    monkeypatch.setattr("advice.advise.occlusion_map", lambda ensemble, photo: Heatmap(np.ones((32, 32), np.float32), 0.0))
    photos = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "a" / "x.png"]
    for path, source in zip(photos, test_photos):
        path.parent.mkdir(exist_ok=True)
        Image.open(source).save(path)
    out = tmp_path / "h"
    assert main(["score", *map(str, photos), "--artifacts-dir", str(art), "--heatmap", str(out)]) == 0
    err = capsys.readouterr().err
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["x-2-heatmap.png", "x-3-heatmap.png", "x-heatmap.png"]
    for photo, name in zip(photos, ["x-heatmap.png", "x-2-heatmap.png", "x-3-heatmap.png"]):
        assert f"Heatmap of {photo}: {out / name}" in err
        assert Image.open(out / name).size == Image.open(photo).size  # each overlay is its own photo's


# --- serve worked hard cheaply -------------------------------------------------------------------

def test_health_answers_while_an_upload_is_being_decoded(ensemble, monkeypatch):
    """decoding ran on the event loop, so /api/health waited for every upload to decode.

    Event order, not time: decoding is held until /api/health has answered (or 10 s). With decoding on the
    event loop, /api/health cannot answer first and the order comes out decode, decode-end, health.
    """
    order, decoding, answered = [], threading.Event(), threading.Event()

    def slow_open(*args, **kw):
        order.append("decode")
        decoding.set()
        answered.wait(10)
        photo = open_photo(*args, **kw)
        order.append("decoded")
        return photo

    monkeypatch.setattr(serve, "open_photo", slow_open)
    app = serve.create_app(ensemble, serve.Limits(max_bytes=30 * 2**20))
    with TestClient(app, base_url=BASE) as client:
        results = {}
        upload = _post(client, "large.jpg", _jpeg(2400), results)
        assert decoding.wait(60), "the upload never started decoding"
        assert client.get("/api/health").json()["ok"] is True
        order.append("health")
        answered.set()
        upload.join(120)
    assert order == ["decode", "health", "decoded"]
    assert results["large.jpg"].status_code == 200 and results["large.jpg"].json()["results"][0]["width"] == 3200


def test_a_full_queue_is_answered_503_with_retry_after(ensemble, gated):
    """the queue had no bound: every request waited, however many were already waiting."""
    gate, workers = gated
    app = serve.create_app(ensemble, serve.Limits(max_waiting=1))
    with TestClient(app, base_url=BASE) as client:
        results = {}
        first = _post(client, "first.jpg", _jpeg(), results)
        assert gate.entered.wait(60)  # first is on the worker, held at the gate
        second = _post(client, "second.jpg", _jpeg(), results)
        _wait_for(lambda: len(workers[0].jobs) == 1, "the second request to wait in the queue")
        third = client.post("/api/score", files=[("photos", ("third.jpg", _jpeg(), "image/jpeg"))])
        assert third.status_code == 503 and int(third.headers["Retry-After"]) >= 1
        assert "busy" in third.json()["detail"]
        gate.open.set()
        first.join(60), second.join(60)
    assert results["first.jpg"].status_code == results["second.jpg"].status_code == 200
    assert gate.calls == [["first.jpg"], ["second.jpg"]]  # the refused request cost nothing


def test_work_for_a_client_that_went_away_is_dropped_before_it_starts(ensemble, gated, monkeypatch, caplog):
    """work for clients that had given up was still done (decoded, then scored) in full."""
    gate, workers = gated
    decoded = []
    monkeypatch.setattr(serve, "open_photo", lambda *a, **kw: decoded.append(a[0]) or open_photo(*a, **kw))
    app = serve.create_app(ensemble)
    hang_up, replies = threading.Event(), []

    async def leaving_client():
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"gone.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + _jpeg() + f"\r\n--{boundary}--\r\n".encode()
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.to_thread(hang_up.wait, 60)
            return {"type": "http.disconnect"}

        async def send(message):
            replies.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/score", "raw_path": b"/api/score", "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
                 "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode()),
                             (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}
        await app(scope, receive, send)

    with TestClient(app, base_url=BASE) as client, caplog.at_level(logging.INFO, logger="advice.serve"):
        results = {}
        first = _post(client, "first.jpg", _jpeg(), results)
        assert gate.entered.wait(60)
        leaver = threading.Thread(target=asyncio.run, args=(leaving_client(),), daemon=True)
        leaver.start()
        _wait_for(lambda: len(workers[0].jobs) == 1, "the leaving client's request to be queued")
        hang_up.set()
        leaver.join(30)
        assert not leaver.is_alive(), "the request of a client that went away was still waiting for the worker"
        gate.open.set()
        first.join(60)
        _wait_for(lambda: not workers[0].jobs, "the worker to pass the dropped job")
    assert results["first.jpg"].status_code == 200
    assert decoded == ["first.jpg"] and gate.calls == [["first.jpg"]]  # gone.jpg: neither decoded nor scored
    assert "went away" in caplog.text and "dropped" in caplog.text


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},  # any page the user visits can POST a form to localhost
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://127.0.0.1:9999"},  # another local app on another port
    {"Sec-Fetch-Site": "cross-site"},
    {"Host": "rebound.evil.example:8000"},  # DNS rebinding: the attacker's name now points at 127.0.0.1
])
def test_cross_site_and_rebound_requests_are_refused(ensemble, monkeypatch, headers):
    """a multipart POST from any other origin was processed, and any Host header accepted."""
    decoded = []
    monkeypatch.setattr(serve, "open_photo", lambda *a, **kw: decoded.append(a[0]) or open_photo(*a, **kw))
    app = serve.create_app(ensemble)
    with TestClient(app, base_url=BASE) as client:
        files = [("photos", ("x.jpg", _jpeg(), "image/jpeg"))]
        refused = client.post("/api/score?crop=0&heatmap=0", files=files, headers=headers)
        assert refused.status_code == 403 and "Refused" in refused.json()["detail"]
        assert decoded == []
        same_page = client.post("/api/score?crop=0&heatmap=0", files=files, headers={"Origin": BASE})
        assert same_page.status_code == 200 and decoded == ["x.jpg"]
        assert client.post("/api/score?crop=0&heatmap=0", files=files).status_code == 200  # curl: no Origin


def test_bound_to_every_interface_addresses_pass_and_names_do_not(ensemble):
    """DNS rebinding with --host 0.0.0.0: a LAN address works, a foreign DNS name does not."""
    app = serve.create_app(ensemble, host="0.0.0.0")
    with TestClient(app, base_url="http://192.168.1.7:8000") as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/health", headers={"Host": "rebound.evil.example"}).status_code == 403


# --- every format Pillow knows was decoded -------------------------------------------------------

@pytest.fixture
def eps_spy(monkeypatch):
    """Records any use of Pillow's EPS plugin (identify, open or the Ghostscript call)."""
    calls = []
    factory, accept = Image.OPEN["EPS"]
    monkeypatch.setitem(Image.OPEN, "EPS", (lambda *a, **kw: calls.append("open") or factory(*a, **kw),
                                            lambda prefix: calls.append("accept") or accept(prefix)))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **kw: calls.append("ghostscript"))
    return calls


def test_eps_upload_never_reaches_the_eps_plugin(ensemble, eps_spy):
    """an EPS declared as image/jpeg reached Pillow's EPS plugin (Ghostscript, where installed)."""
    app = serve.create_app(ensemble)
    with TestClient(app, base_url=BASE) as client:
        files = [("photos", ("cat.jpg", EPS, "image/jpeg")), ("photos", ("ok.jpg", _jpeg(), "image/jpeg"))]
        rows = client.post("/api/score?crop=0&heatmap=0", files=files).json()["results"]
    assert eps_spy == []
    assert "EPS" in rows[0]["error"] and "JPEG, PNG or WebP" in rows[0]["error"] and rows[1]["rank"] == 1


@pytest.mark.parametrize("fmt", ["EPS", "GIF", "TIFF", "BMP"])
def test_image_cache_and_check_data_decode_only_photo_formats(tmp_path, eps_spy, fmt):
    """the image cache and check-data decoded any format Pillow knows; now a per-file error."""
    path = tmp_path / "photo.jpg"
    if fmt == "EPS":
        path.write_bytes(EPS)
    else:
        Image.new("RGB", (20, 20), (200, 0, 0)).save(path, format=fmt)
    problems = decode_problems([path], workers=1)
    assert len(problems) == 1 and str(path) in problems[0] and fmt in problems[0]
    assert "JPEG, PNG or WebP" in problems[0] and eps_spy == []
    for ok in ("JPEG", "PNG", "WEBP"):
        Image.new("RGB", (20, 20), (200, 0, 0)).save(path, format=ok)
        assert load_rgb(path, 16).shape == (16, 16, 3)


# --- warnings, logs and wording ------------------------------------------------------------------

def test_non_loopback_bind_warns_and_library_warnings_are_silenced(advice_run, monkeypatch, caplog):
    """--host 0.0.0.0 gave no warning; scikit-learn-intelex's threading warning filled the log."""
    import uvicorn

    art, _ = advice_run
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="advice.serve"):
        for host in ("127.0.0.1", "0.0.0.0"):
            assert main(["serve", "--artifacts-dir", str(art), "--host", host, "--port", "8123"]) == 0
            if host == "127.0.0.1":
                assert not caplog.records, "loopback needs no warning"
        with warnings.catch_warnings(record=True) as shown:
            warnings.warn("`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.Parallel` "
                          "to make it possible to propagate the scikit-learn configuration", UserWarning)
    assert [kw["host"] for kw in served] == ["127.0.0.1", "0.0.0.0"]
    assert len(caplog.records) == 1 and "0.0.0.0" in caplog.text and "anyone" in caplog.text
    assert shown == []


def test_a_client_that_disconnects_mid_upload_is_one_log_line(ensemble, caplog):
    """a client that disconnected during its upload made the app raise (a full ASGI traceback)."""
    app = serve.create_app(ensemble)
    partial = b"--b\r\nContent-Disposition: form-data; name="
    messages = iter([{"type": "http.request", "body": partial, "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    async def send(message):
        pass

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/score", "raw_path": b"/api/score", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 50001), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"multipart/form-data; boundary=b")]}
    with caplog.at_level(logging.INFO, logger="advice.serve"):
        asyncio.run(app(scope, receive, send))  # raised ClientDisconnect before
    lines = [r for r in caplog.records if r.name == "advice.serve"]
    assert len(lines) == 1 and "went away" in lines[0].getMessage() and lines[0].exc_info is None


def test_wording_fits_the_file_and_who_holds_it(tmp_path):
    """the bomb message said "send a JPEG, PNG or WebP" to a PNG, an empty file was "cannot identify
    image file", and the command line told a local user to "upload the photo again"."""
    bomb = open_photo("huge.png", _png_header(20_000, 10_000))
    assert "send a JPEG" not in bomb.error and "megapixels" in bomb.error and "resize" in bomb.error
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    local = read_photos([empty])[0].error
    assert "0 bytes" in local and "upload" not in local
    web = open_photo("empty.jpg", b"", uploaded=True).error
    assert "0 bytes" in web and web != local
    problems = decode_problems([empty], workers=1)
    assert "empty file (0 bytes)" in problems[0] and "cannot identify" not in problems[0]
