"""Typed errors of the server and the one JSON shape every error response takes.

Every error a client can cause is a ``ServeError`` carrying its HTTP status and a short ``type``;
the library's own typed errors (a malformed query, a file its loader refuses, an unknown modality)
map to statuses in ``status_of``. The body is always ``{"error": {"type": ..., "message": ...}}``.
"""
from __future__ import annotations

from typing import Any

from binder.errors import AnybindError, IndexStoreError, ModalityError, QueryError, RegistryError


class ServeError(AnybindError):
    """A request the server refuses: ``status`` is the HTTP status, ``kind`` the error type."""

    status = 400
    kind = "invalid_request"
    headers: dict[str, str] | None = None  # sent with the error (e.g. Content-Range on a 416)

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind


class AuthError(ServeError):
    """No bearer token, or a wrong one (401)."""

    status, kind = 401, "unauthorized"


class ItemNotFoundError(ServeError):
    """An item id that no row of the current index snapshot has, or whose file is gone (404)."""

    status, kind = 404, "not_found"


class UploadTooLargeError(ServeError):
    """A request body or an upload over ``--max-upload-mb`` (413)."""

    status, kind = 413, "payload_too_large"


class UnsupportedTypeError(ServeError):
    """A content type the route does not take, or a file of no known modality (415)."""

    status, kind = 415, "unsupported_media_type"


class UnreadableInputError(ServeError):
    """An upload its modality's loader refuses (truncated, wrong format, NaN, ...) (422)."""

    status, kind = 422, "unreadable_input"


def status_of(exc: AnybindError) -> tuple[int, str]:
    """(HTTP status, error type) for a typed anybind error raised while serving a request."""
    if isinstance(exc, ServeError):
        return exc.status, exc.kind
    if isinstance(exc, ModalityError):
        return 422, "unreadable_input"
    if isinstance(exc, (QueryError, RegistryError)):
        return 400, "invalid_query" if isinstance(exc, QueryError) else "invalid_request"
    if isinstance(exc, IndexStoreError):
        return 503, "index_unavailable"
    return 500, "internal_error"


def error_body(kind: str, message: str) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"type": kind, "message": message}}


def one_line(text: str, limit: int = 1000) -> str:
    """A message on one line, cut to ``limit`` characters (no traceback, no runaway echo), and
    always encodable as UTF-8: a lone surrogate a client sent is shown escaped (``\\ud800``)."""
    line = " ".join(str(text).split())[:limit]
    return line.encode("utf-8", "backslashreplace").decode("utf-8")
