"""The bearer token: every API route but ``/healthz`` requires it when the server has one.

Clients send ``Authorization: Bearer TOKEN``. A browser cannot add that header to an ``<img>`` or
``<audio>`` request, so the cookie ``anybind_token`` (``TOKEN_COOKIE``) holding the same token is
accepted too; a page may set it. Tokens are compared in constant time.
"""
from __future__ import annotations

import hmac

from starlette.requests import Request

from binder.serve.errors import AuthError
from binder.serve.state import TOKEN_COOKIE, ServeState


def state_of(request: Request) -> ServeState:
    """The app's ``ServeState`` (``app.state.anybind``)."""
    return request.app.state.anybind


def token_ok(request: Request, token: str | None) -> bool:
    """True when the server is open or the request carries ``token`` (header or cookie)."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(given.strip(), token):
        return True
    cookie = request.cookies.get(TOKEN_COOKIE)
    return cookie is not None and _same(cookie, token)


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless ``token_ok``."""
    if not token_ok(request, state_of(request).token):
        has_header = bool(request.headers.get("authorization"))
        raise AuthError("wrong bearer token" if has_header else
                        "this server needs a token: send the header 'Authorization: Bearer TOKEN'")


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))
