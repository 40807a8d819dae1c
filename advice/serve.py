"""`pipeline.py serve`: the web page and its JSON API (FastAPI), one finished run loaded once.

POST /api/score (multipart/form-data, one `photos` field per file; ?crop=0 / ?heatmap=0 to skip those)
answers {"results": [...]} in upload order, each photo with its score, heads, rank, suggested crop, an
upright preview and its heatmap overlay (data URLs) with the heatmap in words (`why`), or its own error.
The page sends one photo per request, in turn, so it can show each result as it comes and rank exactly
the batch it shows (see page.html); a request with several photos ranks them among themselves.

What keeps one page on a laptop safe from other web pages and cheap to abuse:
- `SameOrigin`: a request whose Host is not the bound host or loopback (DNS rebinding), or whose Origin is
  another site (any page the user visits can POST to localhost), is refused with 403 before its body is read.
- `BodyLimit`: a body over the limit gets 413 before anything is decoded.
- `Worker`: one thread decodes and scores one request at a time (memory and CPU threads bounded), so the
  event loop only moves bytes and /api/health stays quick. At most `Limits.max_waiting` requests wait;
  the next gets 503 with Retry-After. A request whose client has gone is dropped before it starts.
- Only PHOTO_FORMATS are decoded (pawcore.images): an EPS sent as image/jpeg never reaches its plugin.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import ipaddress
import logging
import math
import socket
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import cv2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.datastructures import Headers, UploadFile
from starlette.requests import ClientDisconnect

from inference.ensemble import Ensemble
from pawcore.images import ACCEPTED_FORMATS

from .advise import Advice, advise
from .explain import explain_heat
from .heatmap import heat_rgba, png_bytes
from .photos import Photo, PhotoError, open_photo

log = logging.getLogger(__name__)

PREVIEW_SIDE = 512  # the page shows photos (and heatmaps) at most this big; crops use the original
ACCEPTED_TYPES = ("image/", "application/octet-stream")  # what a browser or curl sends for a photo
LOOPBACK_NAMES = ("localhost", "localhost.")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass
class Limits:
    max_bytes: int = 20 * 2**20
    max_files: int = 12
    max_waiting: int = 8  # requests queued behind the one being scored; one more is answered 503


class BodyLimit:
    """ASGI wrapper: 413 for a request body over the limit, by Content-Length or while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"The upload is larger than the {self.max_bytes / 2**20:g} MB limit per request: send fewer or "
                f"smaller photos at once (whoever runs the server can raise it with --max-upload-mb).")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"detail": self._message()}, 413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # no (or a false) Content-Length: stop reading at the limit
                raise HTTPException(413, self._message())  # answered by the app's own exception handler
            return message

        await self.app(scope, counted, send)


def _hostname(netloc: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1', 'Example.org' -> 'example.org' ('' if malformed)."""
    try:
        return urlsplit(f"//{netloc}").hostname or ""
    except ValueError:
        return ""


def _is_ip(name: str, loopback: bool = False) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or not loopback


def is_loopback(host: str) -> bool:
    return host.lower() in LOOPBACK_NAMES or _is_ip(host, loopback=True)


class SameOrigin:
    """ASGI wrapper: 403 for a request from another web page or through a rebound DNS name.

    Host must be loopback (localhost, 127.x, ::1) or the address the server is bound to; bound to every
    interface (0.0.0.0), any IP address or this machine's name is also accepted. A DNS-rebinding page
    reaches the server under its own domain name, which none of these match. A browser names the page
    that sent a request in Origin (and Sec-Fetch-Site): a request from another page is refused, so a page
    the user happens to visit cannot upload work to their local server. Requests without Origin (curl,
    scripts) are not from a web page and pass.
    """

    def __init__(self, app, host: str):
        self.app, self.bound = app, host.strip("[]").lower()
        self.names = {self.bound} if self.bound not in WILDCARD_HOSTS else {
            socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}

    def host_ok(self, host: str) -> bool:
        return is_loopback(host) or host in self.names or (self.bound in WILDCARD_HOSTS and _is_ip(host))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        netloc = headers.get("host", "")
        origin, site = headers.get("origin"), headers.get("sec-fetch-site", "")
        why = None
        if not self.host_ok(_hostname(netloc)):
            why = (f"Host {netloc!r} is not this server's address ({self.bound} or loopback): open the page "
                   f"through the address the server was started with")
        elif scope.get("method") not in ("GET", "HEAD") and (
                (origin is not None and urlsplit(origin).netloc.lower() != netloc.lower()) or site == "cross-site"):
            # Only requests that do work are refused from other pages: a link to the page itself opens it.
            why = (f"the request comes from another web page ({origin or site}); only this server's own page "
                   f"may send photos to it")
        if why is None:
            return await self.app(scope, receive, send)
        log.warning("Refused %s %s: %s", scope.get("method"), scope.get("path"), why)
        await JSONResponse({"detail": f"Refused: {why}."}, 403)(scope, receive, send)


class Busy(Exception):
    """The worker's queue is full."""


class Worker:
    """One thread runs the submitted jobs in turn; at most `max_waiting` wait, cancelled ones are skipped.

    `submit` returns a concurrent Future: cancelling it (the client went away) before the job starts means
    the job never runs. `retry_after` estimates when a slot frees up, from recent job times.
    """

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self.jobs: collections.deque = collections.deque()
        self.reserved = 0  # requests reading their body: each holds a slot, so uploads in memory are bounded too
        self.ready = threading.Condition(threading.RLock())
        self.seconds = 5.0  # a request's time, averaged over recent ones
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="advice-worker", daemon=True)
        self.thread.start()

    def full(self) -> bool:
        with self.ready:
            self.jobs = collections.deque(job for job in self.jobs if not job[0].cancelled())  # dead jobs hold no slot
            return len(self.jobs) + self.reserved >= self.max_waiting

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a place in the queue while a request's body is read; Busy if there is none."""
        with self.ready:
            if self.full():
                raise Busy()
            self.reserved += 1
        try:
            yield
        finally:
            with self.ready:
                self.reserved -= 1

    def submit(self, fn: Callable, *args, reserved: bool = False) -> Future:
        """Queue fn(*args); `reserved`: the caller holds a `slot`, which the job now takes over."""
        future: Future = Future()
        with self.ready:
            if not reserved and self.full():
                raise Busy()
            self.jobs.append((future, fn, args))
            self.ready.notify()
        return future

    def retry_after(self) -> int:
        return max(1, math.ceil(self.seconds * (len(self.jobs) + 1)))

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.jobs and not self.closed:
                    self.ready.wait()
                if self.closed:
                    return
                future, fn, args = self.jobs.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # its client went away while it waited (already logged)
            started = time.monotonic()
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the request that asked; the worker carries on
                future.set_exception(e)
            self.seconds = 0.7 * self.seconds + 0.3 * (time.monotonic() - started)


async def _disconnected(request: Request) -> None:
    """Returns when the client hangs up (after the body, the server's next message is http.disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _preview(photo: Photo, result: Advice) -> dict[str, Any]:
    """The upright photo (JPEG) and its heatmap (transparent PNG), both at most PREVIEW_SIDE wide/high."""
    rgb = photo.rgb()
    scale = min(1.0, PREVIEW_SIDE / max(rgb.shape[:2]))
    w, h = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    out = {"preview": _data_url("image/jpeg", jpeg.tobytes())}
    if result.heat is not None:
        out["heatmap"] = _data_url("image/png", png_bytes(heat_rgba(result.heat.values, w, h)))
        out["why"] = explain_heat(result.heat.values)
    return out


def _check_type(name: str, declared: str, data: bytes) -> Photo | PhotoError:
    declared = declared.lower()
    if declared and not declared.startswith(ACCEPTED_TYPES):
        # Plain words for the page; the declared type stays in the log for whoever runs the server.
        log.info("%s was sent as %r, not an image type.", name, declared)
        return PhotoError(name, f"This file is not a photo: use {ACCEPTED_FORMATS}.")
    return open_photo(name, data, uploaded=True)


def create_app(ensemble: Ensemble, limits: Limits = Limits(), min_crop: float = 0.5,
               host: str = "127.0.0.1") -> SameOrigin:
    """The ASGI app; `host` is the address it is bound to (what Host headers may name besides loopback)."""
    worker = Worker(limits.max_waiting)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.close()

    app = FastAPI(title="Pawpularity photo advice", lifespan=lifespan)
    page = resources.files("advice").joinpath("page.html").read_text()

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        log.info("Client %s went away during its upload; nothing was done.", _client(request))
        return Response(status_code=499)  # never reaches anyone: the connection is closed

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "runs": ensemble.spec.runs, "weights": ensemble.spec.weights, "tta": ensemble.spec.tta,
                "max_upload_mb": limits.max_bytes / 2**20, "max_files": limits.max_files}

    @app.post("/api/score")
    async def score(request: Request, crop: bool = True, heatmap: bool = True) -> Any:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "Send the photos as multipart/form-data, one 'photos' field per file "
                                     "(what an HTML form with enctype=multipart/form-data sends).")
        gone = threading.Event()
        try:
            with worker.slot():  # before reading the body: a refused request costs next to nothing
                files = await _read_uploads(request, limits.max_files)
                future = worker.submit(_run_job, ensemble, min_crop, files, crop, heatmap, gone, reserved=True)
        except Busy:
            raise _busy(worker) from None
        job, watch = asyncio.wrap_future(future), asyncio.ensure_future(_disconnected(request))
        unstarted = None
        try:
            await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not job.done():  # the client went away (or the server is stopping)
                gone.set()  # a job decoding now stops before the models
                unstarted = future.cancel()  # a job still waiting never starts
                job.cancel()
        if unstarted is not None:
            log.info("Client %s went away; its %d photo(s) %s.", _client(request), len(files),
                     "were dropped before any work" if unstarted else "were being decoded or scored already")
            return Response(status_code=499)
        return {"results": job.result()}

    return SameOrigin(BodyLimit(app, limits.max_bytes), host)


def _busy(worker: Worker) -> HTTPException:
    wait = worker.retry_after()
    return HTTPException(503, f"The server is busy: {worker.max_waiting} requests are already waiting to be "
                              f"scored. Try again in about {wait} s.", headers={"Retry-After": str(wait)})


async def _read_uploads(request: Request, max_files: int) -> list[tuple[str, str, bytes]]:
    """(file name, declared type, bytes) of every upload in the request's 'photos' fields."""
    form = await request.form(max_files=max_files, max_fields=max_files + 10)
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile)]
    if not uploads:
        raise HTTPException(400, "No photos in the request: add one or more files in fields named 'photos'.")
    files = [(f.filename or "(no name)", f.content_type or "", await f.read()) for f in uploads]
    await form.close()
    return files


def _run_job(ensemble: Ensemble, min_crop: float, files: list[tuple[str, str, bytes]], crop: bool, heatmap: bool,
             gone: threading.Event) -> list[dict[str, Any]] | None:
    """On the worker thread: decode every upload, then (unless the client has gone) score and rank them."""
    items = [_check_type(*f) for f in files]
    if gone.is_set():
        return None
    results = advise(ensemble, items, crop=crop, heatmap=heatmap, min_crop=min_crop)
    payload = []
    for item, result in zip(items, results):
        row = result.to_json()
        if isinstance(item, Photo):
            row.update(_preview(item, result))
        payload.append(row)
    ranked = sorted((i for i, r in enumerate(payload) if "score" in r), key=lambda i: -payload[i]["score"])
    for rank, i in enumerate(ranked, 1):
        payload[i]["rank"] = rank
    return payload


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "(unknown)"


def quiet_library_warnings() -> None:
    """Once, at start-up: warnings that would otherwise repeat for every request and bury the log.

    scikit-learn-intelex warns about joblib's `delayed` at each SVR prediction (about half of all log
    lines under load); Pillow's DecompressionBombWarning is covered by open_photo's own pixel limit.
    """
    warnings.filterwarnings("ignore", r".*sklearn\.utils\.parallel\.delayed. should be used", UserWarning)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def exposure_warning(host: str, port: int) -> str | None:
    """What binding to `host` risks, when it is not loopback (None when it is)."""
    if is_loopback(host.strip("[]")):
        return None
    where = "every network this machine is on" if host.strip("[]") in WILDCARD_HOSTS else f"the network of {host}"
    return (f"serve is bound to {host}:{port}, reachable from {where}: anyone who can reach it can upload "
            f"photos and make this machine decode and score them (no password; seconds of CPU per photo). "
            f"Use the default --host 127.0.0.1 unless you mean to share it, and then only on a network you "
            f"trust or behind a proxy that asks for a password.")


def run_server(app, host: str, port: int) -> None:
    """Serve `app` (from create_app, bound to the same host) until Ctrl-C; warn first if others can reach it."""
    import uvicorn

    quiet_library_warnings()
    if (warning := exposure_warning(host, port)) is not None:
        log.warning(warning)
    uvicorn.run(app, host=host, port=port, log_level="warning")
