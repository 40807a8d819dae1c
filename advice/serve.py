"""`pipeline.py serve`: the web page and its JSON API (FastAPI), one finished run loaded once.

POST /api/score (multipart/form-data, one `photos` field per file; ?crop=0 / ?heatmap=0 to skip those)
answers {"results": [...]} in upload order, each photo with its score, heads, rank, suggested crop, an
upright preview and its heatmap overlay (data URLs), or its own error. Requests over the size limit get
413 before anything is decoded; the models run one request at a time (a lock), so memory stays bounded
however many clients wait.
"""
from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cv2
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from inference.ensemble import Ensemble

from .advise import Advice, advise
from .heatmap import heat_rgba, png_bytes
from .photos import Photo, PhotoError, open_photo

PREVIEW_SIDE = 512  # the page shows photos (and heatmaps) at most this big; crops use the original
ACCEPTED_TYPES = ("image/", "application/octet-stream")  # what a browser or curl sends for a photo


@dataclass
class Limits:
    max_bytes: int = 20 * 2**20
    max_files: int = 12


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
        out["heatmap"] = _data_url("image/png", png_bytes(heat_rgba(result.heat, w, h)))
    return out


def _check_type(upload: UploadFile, data: bytes) -> Photo | PhotoError:
    name = upload.filename or "(no name)"
    declared = (upload.content_type or "").lower()
    if declared and not declared.startswith(ACCEPTED_TYPES):
        return PhotoError(name, f"was sent as {declared!r}, not an image: send JPEG, PNG or WebP photos.")
    return open_photo(name, data)


def create_app(ensemble: Ensemble, limits: Limits = Limits(), min_crop: float = 0.5) -> BodyLimit:
    app = FastAPI(title="Pawpularity photo advice")
    models = threading.Lock()  # one request on the models at a time: bounded memory and CPU threads
    page = resources.files("advice").joinpath("page.html").read_text()

    def run_models(items, crop: bool, heatmap: bool) -> list[dict[str, Any]]:
        with models:
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

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "runs": ensemble.spec.runs, "weights": ensemble.spec.weights, "tta": ensemble.spec.tta,
                "max_upload_mb": limits.max_bytes / 2**20, "max_files": limits.max_files}

    @app.post("/api/score")
    async def score(request: Request, crop: bool = True, heatmap: bool = True) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "Send the photos as multipart/form-data, one 'photos' field per file "
                                     "(what an HTML form with enctype=multipart/form-data sends).")
        form = await request.form(max_files=limits.max_files, max_fields=limits.max_files + 10)
        uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile)]
        if not uploads:
            raise HTTPException(400, "No photos in the request: add one or more files in fields named 'photos'.")
        items = [_check_type(f, await f.read()) for f in uploads]
        await form.close()
        return {"results": await run_in_threadpool(run_models, items, crop, heatmap)}

    return BodyLimit(app, limits.max_bytes)
