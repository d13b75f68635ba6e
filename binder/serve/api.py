"""The HTTP API: search, items, health, metrics and info here; embeddings (``openai_compat``) and
classification (``classify``) in modules of their own, gathered into ``api_router``.

``open_router`` (``/healthz``) needs no token; everything on ``api_router`` does when the server
has one. Routes answer JSON; every error is ``{"error": {"type", "message"}}`` (``app``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from binder.registry import get_modality
from binder.serve import classify, openai_compat
from binder.serve.auth import require_token, state_of
from binder.serve.bodies import (
    Body,
    as_int,
    as_optional_text,
    as_text,
    check_fields,
    form_fields,
    form_upload,
    request_body,
)
from binder.serve.embedding import embed_expression, embed_upload, time_budget
from binder.serve.errors import ServeError
from binder.serve.items import FileStream, etag_of, open_checked, parse_range

open_router = APIRouter()
api_router = APIRouter(dependencies=[Depends(require_token)])
api_router.include_router(openai_compat.router)
api_router.include_router(classify.router)
_ID = re.compile(r"[0-9]{1,12}")
INLINE_SEARCH_ROWS = 5_000  # searched on the event loop: well under a millisecond, less than a thread hand-off


@open_router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness, without a token: the server answers and serves this index generation."""
    return {"status": "ok", "generation": (await state_of(request).current()).generation}


@api_router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text (or OpenMetrics, when asked for): requests by route and status, latency,
    encode batch sizes, index gauges."""
    state = state_of(request)
    await state.current()  # the generation gauge shows what a search would see now
    body, content_type = state.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


@api_router.get("/info")
async def info(request: Request) -> dict[str, Any]:
    """What is served: model, dimension, index generation and size, modalities, limits."""
    state = state_of(request)
    view = await state.current()
    return {"model": state.model_name, "dim": state.model.embed_dim, "generation": view.generation,
            "items": len(view.index), "index_modalities": view.index.modalities(),
            "model_modalities": sorted(state.model.modalities), "batching": state.config.batching,
            "max_upload_mb": state.config.max_upload_mb, "max_k": state.config.max_k,
            "token_required": state.token is not None}


@api_router.post("/search")
async def search(request: Request, body: Annotated[Body, Depends(request_body)]) -> JSONResponse:
    """The ``k`` items nearest to a query (text, expression, or an uploaded file), best first.

    JSON ``{"query": str, "k": int, "modality": str | null}``, or multipart with a ``file`` part
    (or a ``query`` field) and ``k``, ``modality`` fields.
    """
    state = state_of(request)
    view = await state.current()
    fields: Any
    if body.data is not None:
        fields = body.data
        check_fields(fields, ("query", "k", "modality"))
    else:
        fields = body.form
        form_fields(fields, ("query", "file", "k", "modality"))
    k = as_int(fields.get("k", 10), "k", 1, state.config.max_k)
    modality = as_optional_text(fields.get("modality"), "modality")
    if modality is not None:
        get_modality(modality)
    if (fields.get("query") is None) == (fields.get("file") is None):
        raise ServeError("give the query once: a 'query' (text or expression) or a 'file' upload",
                         kind="invalid_request")
    if fields.get("query") is not None:
        shown = as_text(fields["query"], "query")
        async with time_budget(state):
            vector = await embed_expression(state, shown, view.paths)
    else:
        with await form_upload(state.uploads, fields["file"], "file") as upload:
            async with time_budget(state):
                shown, vector = upload.filename, await embed_upload(state, upload)
    if len(view.index) <= INLINE_SEARCH_ROWS:
        hits = view.index.search(vector, k, modality)
    else:
        hits = await run_in_threadpool(view.index.search, vector, k, modality)
    return JSONResponse({"query": shown, "generation": view.generation,
                         "results": [result(h.row, h.score, h.meta) for h in hits]})


def result(row: int, score: float, meta: dict[str, Any]) -> dict[str, Any]:
    """One search result as the page and clients read it."""
    path = str(meta.get("path", ""))
    return {"id": row, "score": round(float(score), 6), "modality": meta.get("modality", ""), "path": path,
            "name": path.replace("\\", "/").rsplit("/", 1)[-1], "url": f"/items/{row}", "thumb": f"/thumbs/{row}.png"}


@api_router.get("/items/{item_id}")
async def item(request: Request, item_id: str) -> FileStream:
    """The indexed file of row ``item_id``, streamed with its content type, whole or one byte range.

    Only files the index holds, inside its roots and unchanged since indexing (``binder.serve.items``).
    """
    state = state_of(request)
    number = parse_id(item_id)
    await state.current()
    path, row, st = await run_in_threadpool(state.item_file, number)
    span = parse_range(request.headers.get("range"), st.st_size)
    if_range = request.headers.get("if-range")
    if span is not None and if_range is not None and if_range != etag_of(st):
        span = None  # the client holds another version: it gets the whole file
    file = await run_in_threadpool(open_checked, path, st, number)
    return FileStream(file, st, Path(str(row["path"])).name, span,
                      headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


def parse_id(text: str) -> int:
    """An item id: a row number of the index; anything else (``..``, a path, a sign) is a 400."""
    if not _ID.fullmatch(text):
        raise ServeError(f"item id must be a row number of the index, such as /items/0 (got {text[:60]!r})",
                         kind="invalid_id")
    return int(text)
