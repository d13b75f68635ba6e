"""The page's routes on the real app (``create_app``) over a small index of every modality:
the shell and its static files, previews by item id (cached, revalidated, token-checked), and
typed JSON errors."""
from __future__ import annotations

import io
import os
import re
import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from samplegen import MAKERS

import binder.serve.page as page
from binder.index.build import BuildOptions, build_index
from binder.index.store import IndexStore
from binder.serve.previews import MAX_SIZE


@pytest.fixture(scope="module")
def client(page_index, make_app):
    with TestClient(make_app(page_index)) as c:
        yield c


@pytest.fixture(scope="module")
def rows(page_index):
    return IndexStore.open(page_index).snapshot().rows


def assert_error(resp, status: int, kind: str) -> dict:
    assert resp.status_code == status, resp.headers.get("content-type")
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind and body["error"]["message"]
    assert "Traceback" not in resp.text
    return body["error"]


def test_the_page_is_served_with_its_files_and_nothing_from_elsewhere(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    for name in ("app.js", "app.css", "favicon.svg"):
        assert f"/static/{name}" in resp.text
    for name, kind in page.STATIC_FILES.items():
        static = client.get(f"/static/{name}")
        assert static.status_code == 200 and static.headers["content-type"] == kind
        text = static.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{name} loads from elsewhere"
    assert "drop" in resp.text and 'id="query"' in resp.text


@pytest.mark.parametrize("path", ["/static/page.py", "/static/..%2Fpage.py", "/static/%2e%2e", "/static/index.html",
                                  "/static/app.js%00.png"])
def test_static_serves_only_its_own_files(client, path):
    resp = client.get(path)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found"


def test_every_item_has_a_bounded_png_preview(client, rows):
    for item_id, row in enumerate(rows):
        resp = client.get(f"/thumbs/{item_id}.png")
        assert resp.status_code == 200, (row["modality"], resp.text)
        assert resp.headers["content-type"] == "image/png"
        img = Image.open(io.BytesIO(resp.content))
        assert 0 < max(img.size) <= MAX_SIZE, row["modality"]
    assert {r["modality"] for r in rows} == set(MAKERS)


def test_previews_are_cached_and_revalidated(client, monkeypatch):
    calls = []
    real = page.make_preview
    monkeypatch.setattr(page, "THUMBS", page.ThumbCache())
    monkeypatch.setattr(page, "make_preview", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    first = client.get("/thumbs/0.png")
    second = client.get("/thumbs/0.png")
    assert first.content == second.content and len(calls) == 1
    etag = first.headers["etag"]
    again = client.get("/thumbs/0.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_an_unknown_item_is_a_typed_404(client):
    assert_error(client.get("/thumbs/999.png"), 404, "not_found")


@pytest.mark.parametrize("item", ["-1", "01", "+1", "1.5", "x", "1.png"])
def test_an_id_that_is_no_row_number_is_a_400_as_on_items(client, item):
    assert_error(client.get(f"/thumbs/{item}.png"), 400, "invalid_id")
    assert_error(client.get(f"/items/{item}"), 400, "invalid_id")


def test_a_token_guards_previews_but_not_the_page_shell(page_index, make_app):
    with TestClient(make_app(page_index, token="s3cret")) as c:
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        denied = c.get("/thumbs/0.png")
        assert_error(denied, 401, "unauthorized")
        assert denied.headers["www-authenticate"] == "Bearer"
        assert_error(c.get("/thumbs/0.png", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert c.get("/thumbs/0.png", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        c.cookies.set("anybind_token", "s3cret")
        assert c.get("/thumbs/0.png").status_code == 200


def test_a_file_damaged_after_indexing_is_a_typed_409_or_422(tmp_path, page_model, make_app, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    path = MAKERS["depth"](src)
    build_index(tmp_path / "idx", [src], model=page_model, options=BuildOptions(workers=1, progress=False))
    with TestClient(make_app(tmp_path / "idx")) as c:
        assert c.get("/thumbs/0.png").status_code == 200
        st = path.stat()
        shutil.copyfile(__file__, path)  # same name, now not an image: no longer what was indexed
        err = assert_error(c.get("/thumbs/0.png"), 409, "item_changed")
        assert path.name in err["message"]
        # damage that size and mtime do not show (the same size, the old mtime): no preview can be made
        path.write_bytes((b"\x89PNG not really" + b"x" * st.st_size)[:st.st_size])
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        monkeypatch.setattr(page, "THUMBS", page.ThumbCache())  # not the preview cached for this key
        err = assert_error(c.get("/thumbs/0.png"), 422, "preview_failed")
        assert path.name in err["message"]
