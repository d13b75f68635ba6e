"""``create_app``: the FastAPI application of ``anybind serve``.

The app holds one ``ServeState`` as ``app.state.anybind`` (the page reads it there), serves the
API (``binder.serve.api``) and the search page (``binder.serve.page``), and answers every error
as ``{"error": {"type", "message"}}`` with a 4xx status for what the client got wrong.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from binder.errors import AnybindError
from binder.serve import api
from binder.serve.config import ServeConfig
from binder.serve.errors import error_body, one_line, status_of
from binder.serve.logs import redact_access_log
from binder.serve.middleware import ServeMiddleware
from binder.serve.state import ServeState

log = logging.getLogger("anybind.serve")
HTTP_KINDS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
              416: "range_not_satisfiable"}


def create_app(config: ServeConfig, model: Any = None, model_name: str | None = None) -> FastAPI:
    """The app serving ``config.index`` with ``model`` (loaded by the ``anybind search`` rule when None).

    Tests pass a model; the state (encode worker, decode threads, upload folder) starts here and
    stops when the app's lifespan ends.
    """
    if model is None:
        from binder.serve.loading import load_serve_model

        model, model_name = load_serve_model(config)
    state = ServeState(config, model.eval(), model_name or "anybind-model")
    redact_access_log()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="anybind", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.anybind = state
    app.include_router(api.open_router)
    app.include_router(api.api_router)
    _include_page(app)
    _install_handlers(app)
    app.add_middleware(ServeMiddleware, metrics=state.metrics, max_body=config.max_body_bytes)
    return app


def _include_page(app: FastAPI) -> None:
    """The search page's routes (``/``, ``/static/...``, ``/thumbs/{id}.png``), when that module is
    installed; without it the API is served alone."""
    try:
        from binder.serve.page import router as page_router
    except ImportError as exc:
        if exc.name != "binder.serve.page":
            raise
        return
    app.include_router(page_router)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(AnybindError)
    async def anybind_error(_: Request, exc: AnybindError) -> JSONResponse:
        status, kind = status_of(exc)
        if status >= 500:
            log.error("anybind serve: %s", one_line(str(exc), 300))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        headers.update(getattr(exc, "headers", None) or {})
        message = getattr(exc, "message", None) or str(exc)
        return JSONResponse(error_body(kind, one_line(message)), status_code=status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body("invalid_request", one_line(f"{where}: {first.get('msg', 'invalid')}")),
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if exc.status_code not in (404, 405) else (
            f"no route {request.method} {request.url.path}" if exc.status_code == 404 else
            f"{request.url.path} does not take {request.method}")
        return JSONResponse(error_body(HTTP_KINDS.get(exc.status_code, "http_error"), one_line(str(message))),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))
