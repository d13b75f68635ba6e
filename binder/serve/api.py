"""The HTTP API: search, items, health, metrics and info here; embeddings (``openai_compat``) and
classification (``classify``) in modules of their own, gathered into ``api_router``.

``open_router`` (``/healthz``) needs no token; everything on ``api_router`` does when the server
has one. Routes answer JSON; every error is ``{"error": {"type", "message"}}`` (``app``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from binder.index.mix import MIXES
from binder.index.search import EmbeddingIndex, Hit
from binder.registry import get_modality
from binder.serve import classify, openai_compat
from binder.serve.auth import require_token, state_of
from binder.serve.bodies import (
    Body,
    as_int,
    as_optional_text,
    as_text,
    check_fields,
    file_field,
    form_fields,
    request_body,
)
from binder.serve.embedding import embed_expression, embed_upload, time_budget
from binder.serve.errors import ServeError
from binder.serve.items import FileStream, etag_of, open_checked, parse_id, parse_range

__all__ = ["DEFAULT_MIX", "GET", "api_router", "open_router", "parse_id", "result"]

open_router = APIRouter()
api_router = APIRouter(dependencies=[Depends(require_token)])
api_router.include_router(openai_compat.router)
api_router.include_router(classify.router)
INLINE_SEARCH_ROWS = 5_000  # searched on the event loop: well under a millisecond, less than a thread hand-off
GET = ["GET", "HEAD"]  # every route that answers GET answers HEAD: the same status and headers, no body
DEFAULT_MIX = "calibrated"  # as `anybind search`
SEARCH_FIELDS = ("query", "file", "k", "modality", "mix")


@open_router.api_route("/healthz", methods=GET)
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness, without a token: the server answers and serves this index generation."""
    return {"status": "ok", "generation": (await state_of(request).current()).generation}


@api_router.api_route("/metrics", methods=GET)
async def metrics(request: Request) -> Response:
    """Prometheus text (or OpenMetrics, when asked for): requests by route and status, latency,
    encode batch sizes, index gauges."""
    state = state_of(request)
    await state.current()  # the generation gauge shows what a search would see now
    body, content_type = state.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


@api_router.api_route("/info", methods=GET)
async def info(request: Request) -> dict[str, Any]:
    """What is served: model, dimension, the device and precision the model runs at, index generation
    and size, modalities, mixes, limits."""
    state = state_of(request)
    view = await state.current()
    return {"model": state.model_name, "dim": state.model.embed_dim, "device": str(state.model.input_device),
            "precision": state.model.precision, "generation": view.generation,
            "items": len(view.index), "index_modalities": view.index.modalities(),
            "model_modalities": sorted(state.model.modalities), "mixes": list(MIXES), "default_mix": DEFAULT_MIX,
            "batching": state.config.batching,
            "max_upload_mb": state.config.max_upload_mb, "max_k": state.config.max_k,
            "token_required": state.token is not None}


@api_router.post("/search")
async def search(request: Request, body: Annotated[Body, Depends(request_body)]) -> JSONResponse:
    """The ``k`` items nearest to a query (text, expression, or a file), best first, several
    modalities ranked together by ``mix`` (``binder.index.mix``; ``calibrated`` unless asked).

    JSON ``{"query": str, "file": {"file": "<base64>", "filename": str}, "k": int, "modality": str |
    null, "mix": str}`` (a query or a file), or multipart with a ``file`` part (or a ``query``
    field) and ``k``, ``modality``, ``mix`` fields. The answer names the ``mix`` asked for and the
    one that ranked (``ranked_by``: ``raw`` when one modality is searched, by ``modality`` or
    because the index holds no other); each result has its cosine ``score`` and ``rank_score``.
    """
    state = state_of(request)
    view = await state.current()
    form = body.data is None
    fields: Any = body.form if form else body.data
    if form:
        form_fields(fields, SEARCH_FIELDS)
    else:
        check_fields(fields, SEARCH_FIELDS)
    k = as_int(fields.get("k", 10), "k", 1, state.config.max_k, form=form)
    modality = as_optional_text(fields.get("modality"), "modality")
    if modality is not None:
        get_modality(modality)
    mix = as_mix(fields.get("mix"))
    if (fields.get("query") is None) == (fields.get("file") is None):
        raise ServeError("give the query once: a 'query' (text or expression) or a 'file' upload",
                         kind="invalid_request")
    if fields.get("query") is not None:
        shown = as_text(fields["query"], "query")
        async with time_budget(state):
            vector = await embed_expression(state, shown, view.paths)
    else:
        with await file_field(state.uploads, body, fields["file"], "file") as upload:
            async with time_budget(state):
                shown, vector = upload.filename, await embed_upload(state, upload)
    if len(view.index) <= INLINE_SEARCH_ROWS:
        hits, ranked_by = ranked_search(view.index, vector, k, modality, mix)
    else:
        hits, ranked_by = await run_in_threadpool(ranked_search, view.index, vector, k, modality, mix)
    return JSONResponse({"query": shown, "generation": view.generation, "mix": mix, "ranked_by": ranked_by,
                         "results": [result(h.row, h.score, h.meta, h.rank_score) for h in hits]})


def as_mix(value: Any) -> str:
    """The ``mix`` field: one of ``MIXES``; absent, null or empty: ``DEFAULT_MIX``."""
    if value is None or value == "":
        return DEFAULT_MIX
    if not isinstance(value, str) or value not in MIXES:
        shown = repr(value)[:40] if isinstance(value, str | int | float | bool) else f"a {type(value).__name__}"
        raise ServeError(f"mix must be one of {', '.join(MIXES)} (got {shown})", kind="invalid_request")
    return value


def ranked_search(index: EmbeddingIndex, vector: Any, k: int, modality: str | None,
                  mix: str) -> tuple[list[Hit], str]:
    """``index.search`` ranked by ``mix``, and the mix that ranked: ``raw`` when only one modality
    is searched (a ``modality`` filter, or an index of one modality), where a mix changes nothing."""
    hits = index.search(vector, k, modality, mix)
    several = modality is None and mix != "raw" and len(index.modalities()) > 1
    return hits, mix if several else "raw"


def result(row: int, score: float, meta: dict[str, Any], rank_score: float | None = None) -> dict[str, Any]:
    """One search result as the page and clients read it: ``score`` the cosine, ``rank_score`` what
    the ranking used (the cosine itself for a raw ranking)."""
    path = str(meta.get("path", ""))
    return {"id": row, "score": round(float(score), 6),
            "rank_score": round(float(score if rank_score is None else rank_score), 6),
            "modality": meta.get("modality", ""), "path": path,
            "name": path.replace("\\", "/").rsplit("/", 1)[-1], "url": f"/items/{row}", "thumb": f"/thumbs/{row}.png"}


@api_router.api_route("/items/{item_id}", methods=GET)
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
