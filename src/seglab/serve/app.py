"""The FastAPI application: ``/predict``, ``/health``, ``/model``, the web page at ``/``.

One :class:`~seglab.inference.Predictor` is loaded at start-up and shared by every request
(large uploads are tiled by it, as ``seglab predict`` tiles). Every refusal is a status and a
one-line ``{"detail": ...}`` (:class:`~seglab.serve.limits.HTTPProblem`); an unexpected error is
a 500 with the exception's type only, never a traceback. One log line per request
(``seglab.serve`` logger): method, path, status, bytes in, milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request  # the serve extra; this module is imported only to serve
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from seglab.inference.heap import release_memory
from seglab.serve.limits import (
    Gate,
    HTTPProblem,
    Limits,
    check_pixels,
    declared_shape,
    decode,
    sniff,
)
from seglab.serve.results import (
    FORMATS,
    Prediction,
    choose_format,
    geojson,
    instances_json,
    label_tiff,
    overlay_png,
)

LOG = logging.getLogger("seglab.serve")
STATIC = Path(__file__).parent / "static"


class _TooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit (413)."""


def _too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is, or a group holding, :class:`_TooLarge` (task groups wrap it)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_too_large(e) for e in exc.exceptions)
    return isinstance(exc, _TooLarge)


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by ``Content-Length`` before reading, or
    while streaming (chunked uploads) as soon as the count passes it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _problem(send, 413, f"upload of {int(declared):,} bytes; this server takes at most {self.max_bytes:,}")
        seen, started = 0, False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception as exc:
            if not _too_large(exc):
                raise
            if not started:
                await _problem(send, 413, f"upload larger than {self.max_bytes:,} bytes")


async def _problem(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def model_info(predictor: Any, checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    meta = predictor.meta
    classes = [c["name"] for c in meta["panoptic"]["classes"]] if meta["task"] == "panoptic" else list(meta.get("classes") or [])
    return {
        "checkpoint": Path(checkpoint).name, "name": meta["model"]["name"], "task": meta["task"],
        "method": meta.get("method"), "classes": classes, "mpp": meta.get("mpp"),
        "in_channels": predictor.in_channels, "decoder": meta.get("decoder"), "tile": predictor.tile,
        "backend": getattr(predictor, "backend", "torch"), "seglab_version": meta.get("seglab_version"),
    }


def predict_image(predictor: Any, image: np.ndarray) -> Prediction:
    """Labels, per-instance scores and (panoptic checkpoints) per-instance classes of one image, tiled.

    The score is the instance's mean foreground probability; for a panoptic checkpoint, whose
    instances are typed, it is the winning type's share of the summed class probability
    (``type_prob``, as in ``seglab predict``'s GeoJSON).
    """
    from seglab.inference.runner import _ForegroundTap  # the scores seglab predict writes to COCO
    from seglab.inference.source import ArraySource

    source = ArraySource(image, "upload")
    if predictor.task == "panoptic":
        from seglab.inference.panoptic_writers import predict_panoptic

        result = predict_panoptic(predictor, source)
        classes = predictor.meta["panoptic"]["classes"]
        return Prediction(result.instances, dict(result.type_prob),
                          {i: classes[c]["name"] for i, c in result.instance_class.items()},
                          {c["name"]: c["color"] for c in classes if c.get("color") is not None})
    tap = _ForegroundTap(predictor, source.shape[:2])
    labels = tap.predictor.predict_source(source)
    return Prediction(labels, tap.scores(labels))


def create_app(predictor: Any, *, checkpoint: str | os.PathLike[str], limits: Limits | None = None,
               allow_paths: list[str] | None = None) -> Any:
    """The ASGI app serving ``predictor`` (see module docstring); ``allow_paths``: folders whose
    files ``POST /predict`` may name with a ``path`` form field instead of an upload."""
    limits = limits or Limits()
    roots = [Path(p).resolve() for p in (allow_paths or [])]
    info = model_info(predictor, checkpoint)
    app = FastAPI(title="seglab", version=str(info.get("seglab_version") or ""),
                  description=f"Segmentation with {info['name']} ({info['task']}, {info['method']}).")
    app.state.max_bytes = limits.max_upload_bytes
    pool = ThreadPoolExecutor(max(1, limits.concurrency), thread_name_prefix="seglab-predict")
    state: dict[str, Any] = {"gate": None, "served": 0}

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Any) -> Any:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            LOG.error("%s %s 500 %s: %s", request.method, request.url.path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            response = JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)
        LOG.info("%s %s %d %s B %.0f ms", request.method, request.url.path, response.status_code,
                 request.headers.get("content-length", "-"), 1000 * (time.perf_counter() - start))
        return response

    @app.exception_handler(HTTPProblem)
    async def problem(_: Request, exc: HTTPProblem) -> Any:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        gate = state["gate"]
        return {"status": "ok", "running": gate.active if gate else 0, "queued": gate.waiting if gate else 0,
                "served": state["served"]}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return info

    @app.post("/predict", responses={200: {"content": {m: {} for m in FORMATS.values()}}})
    async def predict(request: Request, format: str | None = None) -> Any:  # noqa: A002 - the query name
        """Predict an uploaded image (multipart field ``file``), or a server file (field ``path``, with
        ``--allow-paths``). Returns instances JSON, GeoJSON, overlay PNG or label TIFF by ``?format=``
        (json | geojson | png | tiff) or ``Accept``."""
        fmt = choose_format(format, request.headers.get("accept"))
        data, name = await _read_input(request, roots)
        kind = sniff(data[:8])
        check_pixels(declared_shape(data, kind), limits)
        if state["gate"] is None:
            state["gate"] = Gate(limits)
        async with state["gate"]:
            loop = asyncio.get_running_loop()
            image, result = await loop.run_in_executor(pool, _run, predictor, data, kind)
        labels = result.labels
        state["served"] += 1
        if fmt == "png":
            return Response(await loop.run_in_executor(pool, overlay_png, image, labels), media_type=FORMATS[fmt])
        if fmt == "tiff":
            return Response(label_tiff(labels), media_type=FORMATS[fmt],
                            headers={"content-disposition": f'attachment; filename="{Path(name).stem}_instances.tif"'})
        if predictor.task not in ("instance", "panoptic"):
            if fmt == "geojson":
                raise HTTPProblem(406, "GeoJSON needs an instance checkpoint; this one is semantic")
            counts = np.bincount(labels.ravel())
            return JSONResponse({"width": labels.shape[1], "height": labels.shape[0],
                                 "class_pixels": {str(c): int(n) for c, n in enumerate(counts) if n}})
        if fmt == "geojson":
            return JSONResponse(geojson(result), media_type=FORMATS[fmt])
        return JSONResponse(instances_json(result, predictor.meta))

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return BodyLimit(app, limits.max_upload_bytes) if limits else app


def _run(predictor: Any, data: bytes, kind: str) -> tuple[np.ndarray, Prediction]:
    from seglab.errors import SeglabError

    image = decode(data, kind)
    try:
        result = predict_image(predictor, image)
    except SeglabError as exc:  # e.g. a channel count the model cannot take
        raise HTTPProblem(400, str(exc).replace("upload: ", "")) from None
    finally:
        release_memory()
    return image, result


async def _read_input(request: Any, roots: list[Path]) -> tuple[bytes, str]:
    """The uploaded file's bytes (multipart ``file``), or an allowed server file's (``path``)."""
    from starlette.requests import ClientDisconnect

    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise HTTPProblem(415, "POST the image as multipart/form-data (field 'file')")
    try:
        form = await request.form()
    except ClientDisconnect:
        raise HTTPProblem(400, "client disconnected during the upload") from None
    except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
        if _too_large(exc):
            raise HTTPProblem(413, f"upload larger than {request.app.state.max_bytes:,} bytes") from None
        raise HTTPProblem(400, f"malformed multipart body ({type(exc).__name__})") from None
    upload = form.get("file")
    if upload is not None and hasattr(upload, "read"):
        return await upload.read(), upload.filename or "upload"
    path = form.get("path")
    if path:
        if not roots:
            raise HTTPProblem(403, "this server takes uploads only (start it with --allow-paths DIR to name server files)")
        target = Path(str(path)).resolve()
        if not any(target.is_relative_to(r) for r in roots) or not target.is_file():
            raise HTTPProblem(403 if target.exists() else 404, f"{path}: not a file under the allowed folders")
        return target.read_bytes(), target.name
    raise HTTPProblem(400, "no image: send a multipart field 'file'")
