"""``--token``: every API route needs ``Authorization: Bearer TOKEN`` (or the page's cookie);
``/healthz`` stays open."""
from __future__ import annotations

import pytest
from serve_helpers import error_of

from binder.serve.state import TOKEN_COOKIE

ROUTES = [("GET", "/metrics"), ("GET", "/info"), ("GET", "/items/0"), ("GET", "/v1/models"),
          ("POST", "/search"), ("POST", "/v1/embeddings"), ("POST", "/classify")]


@pytest.fixture
def locked(serve):
    return serve(token="s3cret")


@pytest.mark.parametrize("method, path", ROUTES)
def test_routes_need_the_token(locked, method, path):
    r = locked.request(method, path)
    assert "Authorization: Bearer" in error_of(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    r = locked.request(method, path, headers={"Authorization": "Bearer wrong"})
    assert error_of(r, 401, "unauthorized") == "wrong bearer token"


def test_the_right_token_opens_them(locked):
    auth = {"Authorization": "Bearer s3cret"}
    assert locked.post("/search", json={"query": "x"}, headers=auth).status_code == 200
    assert locked.get("/items/0", headers=auth).status_code == 200
    assert locked.get("/metrics", headers={"Authorization": "bearer s3cret"}).status_code == 200
    locked.cookies.set(TOKEN_COOKIE, "s3cret")
    assert locked.get("/items/0").status_code == 200


def test_healthz_is_open(locked):
    assert locked.get("/healthz").status_code == 200


def test_a_blank_token_is_refused(serve):
    with pytest.raises(ValueError, match="token"):
        serve(token="  ")
