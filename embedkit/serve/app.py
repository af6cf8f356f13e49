"""The Starlette application: the page, its static assets and the JSON API it uses (docs/serve.md).

Routes (all GET unless noted; errors are ``{"error": "one line"}`` with a 4xx status):

``/``                              the page (``static/index.html``)
``/static/{file}``                 page assets shipped in the package (no CDN)
``/api/info``                      store summary, layout, index, fields, limits
``/api/map``                       ``{"ids", "x", "y"}`` map positions in [0, 1] (JSON)
``/api/map.bin``                   the same as little-endian ``int32 ids[n] | float32 x[n] | float32 y[n]``
``/api/fields``                    colour fields: ``[{"name", "label", "kind"}]``
``/api/fields/{name}``             one field's values in map order (codes + categories, or values)
``/api/search?q=TEXT&limit=20``    items whose path contains the words of TEXT
``/api/items/{key}``               one item (id, or path exactly as stored): tags, predictions, highlight
``/api/items/{key}/neighbors?k=10`` nearest items (embedkit.search)
``/api/audio/{id}``                the item's audio file, HTTP Range; unplayable formats transcoded to Ogg/Opus
POST ``/api/query?name=F&k=10``    body: an audio file's bytes; its nearest items
POST ``/api/recommend?user=&k=20&diversity=0&cold_only=0``  body: a listening history (CSV/TSV text)
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import EmbedkitError
from .collection import MAX_HISTORY_BYTES, MAX_UPLOAD_BYTES, Collection, RequestError
from .files import Transcoder, media_type

log = logging.getLogger("embedkit.serve")
STATIC = Path(__file__).resolve().parent / "static"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _err(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"{name} must be an integer, given {raw!r}") from None


def _float(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise RequestError(f"{name} must be a number, given {raw!r}") from None
    if not np.isfinite(v):
        raise RequestError(f"{name} must be finite, given {raw!r}")
    return v


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"{what} is {int(declared)} bytes, more than the {limit // 2**20} MiB limit", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"{what} is more than the {limit // 2**20} MiB limit", 413)
        chunks.append(chunk)
    if size == 0:
        raise RequestError(f"empty {what}: send the file's bytes as the request body")
    return b"".join(chunks)


def create_app(collection: Collection, *, close_collection: bool = False) -> Starlette:
    """The ASGI app over an open `Collection` (``close_collection``: close it when the app shuts down)."""
    col = collection
    transcoder = Transcoder()
    upload_dir = Path(tempfile.mkdtemp(prefix="embedkit-upload-"))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(col.info))

    async def map_json(request: Request) -> Response:
        xy = col.layout.xy
        return JSONResponse({"ids": col.ids.tolist(), "x": np.round(xy[:, 0], 5).tolist(),
                             "y": np.round(xy[:, 1], 5).tolist(), "method": col.layout.method})

    map_bin_bytes = (col.ids.astype("<i4").tobytes() + col.layout.xy[:, 0].astype("<f4").tobytes()
                     + col.layout.xy[:, 1].astype("<f4").tobytes())

    async def map_bin(request: Request) -> Response:
        return Response(map_bin_bytes, media_type="application/octet-stream",
                        headers={"X-Items": str(len(col.ids)), "Cache-Control": "no-cache"})

    async def fields(request: Request) -> Response:
        return JSONResponse(col.field_list())

    async def field(request: Request) -> Response:
        f = await run_in_threadpool(col.field, request.path_params["name"])
        return JSONResponse(f.to_json())

    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "")
        limit = max(1, min(_int(request, "limit", 20), 200))
        return JSONResponse({"query": q, "results": col.find(q, limit)})

    async def item(request: Request) -> Response:
        iid = await run_in_threadpool(col.item_id, request.path_params["key"])
        return JSONResponse(await run_in_threadpool(col.details, iid))

    async def neighbors(request: Request) -> Response:
        iid = await run_in_threadpool(col.item_id, request.path_params["key"])
        k = _int(request, "k", 10)
        res = await run_in_threadpool(col.neighbors, iid, k)
        return JSONResponse({"id": iid, "k": k, "results": res})

    async def audio(request: Request) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit():
            raise RequestError(f"audio is addressed by item id, given {raw!r}", 404)
        path = col.audio_file(int(raw))
        mt = media_type(path)
        if mt is None:
            path = await run_in_threadpool(transcoder.get, path)
            mt = "audio/ogg"
        return FileResponse(path, media_type=mt, headers={"Cache-Control": "no-cache"})

    async def query(request: Request) -> Response:
        name = request.query_params.get("name") or "upload"
        k = _int(request, "k", 10)
        body = await _read_body(request, MAX_UPLOAD_BYTES, f"uploaded file {name!r}")
        suffix = Path(name).suffix.lower()
        safe = _SAFE_NAME.sub("_", Path(name).stem)[:60] or "upload"
        fd, tmp = tempfile.mkstemp(prefix=f"{safe}-", suffix=_SAFE_NAME.sub("", suffix)[:10], dir=upload_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            out = await run_in_threadpool(col.query_file, Path(tmp), name, k)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return JSONResponse(out)

    async def recommend(request: Request) -> Response:
        body = await _read_body(request, MAX_HISTORY_BYTES, "history")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RequestError("history is not UTF-8 text (send a CSV or TSV file)", 422) from None
        user = request.query_params.get("user") or None
        k = _int(request, "k", 20)
        diversity = _float(request, "diversity", 0.0)
        cold = request.query_params.get("cold_only", "0").lower() in ("1", "true", "yes", "on")
        scorer = request.query_params.get("scorer", "auto")
        out = await run_in_threadpool(lambda: col.recommend(text, user=user, k=k, diversity=diversity,
                                                            cold_only=cold, scorer=scorer))
        return JSONResponse(out)

    async def on_request_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status", 400) if isinstance(exc, RequestError) else 422
        return _err(str(exc), status)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/") or exc.status_code >= 400:
            return _err(exc.detail if exc.detail else "not found", exc.status_code)
        return Response(status_code=exc.status_code)  # pragma: no cover

    async def on_value(request: Request, exc: Exception) -> Response:
        return _err(str(exc), 422)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return _err(f"internal error ({type(exc).__name__}); the server log has the details", 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            transcoder.close()
            import shutil

            shutil.rmtree(upload_dir, ignore_errors=True)
            if close_collection:
                col.close()

    routes = [
        Route("/", page),
        Route("/index.html", page),
        Route("/api/info", info),
        Route("/api/map", map_json),
        Route("/api/map.bin", map_bin),
        Route("/api/fields", fields),
        Route("/api/fields/{name:str}", field),
        Route("/api/search", search),
        Route("/api/items/{key:path}/neighbors", neighbors),
        Route("/api/items/{key:path}", item),
        Route("/api/audio/{id:str}", audio),
        Route("/api/query", query, methods=["POST"]),
        Route("/api/recommend", recommend, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        RequestError: on_request_error, EmbedkitError: on_request_error, HTTPException: on_http,
        ValueError: on_value, Exception: on_crash,
    })
    app.state.collection = col
    app.state.transcoder = transcoder
    return app


def tune_for_serving() -> None:
    """One FAISS thread per query: a server answers single queries, where OpenMP threads only add contention
    (measured: several times slower p50 on a busy 2-core machine). Process-wide; called by ``embedkit serve``."""
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:  # pragma: no cover - faiss is a core dependency
        pass


def app_for_store(store: str | os.PathLike, **kwargs: Any) -> Starlette:
    """Open ``store`` as a `Collection` (``kwargs``: its options) and return the app that closes it on shutdown."""
    return create_app(Collection(store, **kwargs), close_collection=True)
