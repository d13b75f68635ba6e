"""The bearer token: every API route but ``/healthz`` requires it when the server has one.

Clients send ``Authorization: Bearer TOKEN``. A browser cannot add that header to an ``<img>`` or
``<audio>`` request, so the cookie ``anybind_token`` (``TOKEN_COOKIE``) holding the same token is
accepted too; the page sets it (percent-encoded, as ``encodeURIComponent`` writes it, so that any
token fits in a cookie). Tokens are compared as UTF-8 bytes, in constant time: the header's and the
cookie's raw bytes (HTTP carries bytes; Starlette hands them over decoded as Latin-1, which gives
them back exactly), and the cookie's bytes percent-decoded. So a token of any characters works.
"""
from __future__ import annotations

import hmac
from urllib.parse import unquote_to_bytes

from starlette.requests import Request

from binder.serve.errors import AuthError
from binder.serve.state import TOKEN_COOKIE, ServeState


def state_of(request: Request) -> ServeState:
    """The app's ``ServeState`` (``app.state.anybind``)."""
    return request.app.state.anybind


def token_bytes(token: str) -> bytes:
    """The bytes a client sends for ``token``: its UTF-8 (a command-line argument that was not UTF-8
    comes back as the bytes it was given)."""
    return token.encode("utf-8", "surrogateescape")


def token_ok(request: Request, token: str | None) -> bool:
    """True when the server is open or the request carries ``token`` (header or cookie)."""
    if token is None:
        return True
    want = token_bytes(token)
    scheme, _, given = _raw(request.headers.get("authorization", "")).partition(b" ")
    if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(b" \t"), want):
        return True
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie is None:
        return False
    raw = _raw(cookie)
    # both compared whatever the first gives, so the time taken does not tell which form matched
    as_is, decoded = hmac.compare_digest(raw, want), hmac.compare_digest(unquote_to_bytes(raw), want)
    return as_is or decoded


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless ``token_ok``."""
    if not token_ok(request, state_of(request).token):
        has_header = bool(request.headers.get("authorization"))
        raise AuthError("wrong bearer token" if has_header else
                        "this server needs a token: send the header 'Authorization: Bearer TOKEN'")


def _raw(text: str) -> bytes:
    """The bytes of a header value Starlette decoded as Latin-1."""
    return text.encode("latin-1", "replace")
