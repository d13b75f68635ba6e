"""One set of rules on every route: ``/search`` ranks several modalities by a mix (``calibrated`` by
default, as ``anybind search``) and says so; file uploads in JSON on every route that takes a file;
item ids read alike on ``/items/{id}`` and ``/thumbs/{id}.png``; HEAD on every GET route; JSON
integers that are integers; and ``POST /preview``, the picture of an uploaded file."""
from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.routing import APIRoute
from PIL import Image
from samplegen import MAKERS
from serve_helpers import QUIET, b64file, error_of, find

from binder.index.build import build_index
from binder.index.mix import MIXES
from binder.index.search import EmbeddingIndex
from binder.serve.previews import make_preview

MIXED = ("image", "depth", "thermal", "text", "imu")


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory, model):
    """Four files of each of five modalities: enough rows for each modality's mean and spread."""
    root = tmp_path_factory.mktemp("mixed")
    files = root / "files"
    files.mkdir()
    for modality in MIXED:
        for seed in range(4):
            MAKERS[modality](files, seed=seed)
    build_index(root / "idx", [files], model=model, options=QUIET)
    return root / "idx"


def _served_vector(client, text: str) -> np.ndarray:
    """The server's own vector of ``text`` (the one its /search embeds)."""
    vec = np.asarray(client.post("/v1/embeddings", json={"input": text}).json()["data"][0]["embedding"], np.float32)
    return vec / np.linalg.norm(vec)


def test_search_ranks_by_calibrated_mix_by_default_as_the_cli(serve, mixed_index):
    client = serve(mixed_index)
    index = EmbeddingIndex.open(mixed_index)
    vec = _served_vector(client, "the digit two")
    for mix in (None, *MIXES):
        body = {"query": "the digit two", "k": 8} | ({} if mix is None else {"mix": mix})
        r = client.post("/search", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        want_mix = mix or "calibrated"
        assert data["mix"] == want_mix and data["ranked_by"] == want_mix
        want = index.search(vec, 8, None, want_mix)
        assert [h["id"] for h in data["results"]] == [h.row for h in want], want_mix
        assert [h["rank_score"] for h in data["results"]] == pytest.approx([h.rank_score for h in want], abs=1e-3)
        assert [h["score"] for h in data["results"]] == pytest.approx([h.score for h in want], abs=1e-5)
    calibrated = client.post("/search", json={"query": "the digit two", "k": 8}).json()["results"]
    assert len({h["modality"] for h in calibrated}) > 1, "a calibrated mix draws on several modalities"


def test_a_filtered_search_ranks_by_cosine_and_says_so(serve, mixed_index):
    client = serve(mixed_index)
    assert client.post("/search", json={"query": "x", "mix": None}).json()["mix"] == "calibrated"
    data = client.post("/search", json={"query": "x", "modality": "depth", "mix": "calibrated"}).json()
    assert data["mix"] == "calibrated" and data["ranked_by"] == "raw"
    assert {h["modality"] for h in data["results"]} == {"depth"}
    assert all(h["rank_score"] == h["score"] for h in data["results"])


def test_the_mix_is_a_form_field_too(serve, mixed_index, corpus):
    client = serve(mixed_index)
    path = find(corpus, "thermal")
    r = client.post("/search", files={"file": (path.name, path.read_bytes())}, data={"k": "3", "mix": "raw"})
    assert r.status_code == 200, r.text
    assert r.json()["mix"] == "raw" and r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("mix", ["best", "Raw", 3, True, ["raw"]])
def test_an_unknown_mix_is_a_400_naming_the_choices(client, mix):
    message = error_of(client.post("/search", json={"query": "x", "mix": mix}), 400, "invalid_request")
    assert "mix" in message and all(m in message for m in MIXES)


def test_search_takes_a_json_file_object_like_the_other_routes(client, corpus):
    path = find(corpus, "thermal")
    by_form = client.post("/search", files={"file": ("mine.thermal.png", path.read_bytes())},
                          data={"k": "3", "mix": "raw"})
    by_json = client.post("/search", json={"file": b64file(path, "mine.thermal.png"), "k": 3, "mix": "raw"})
    assert by_json.status_code == 200, by_json.text
    assert by_json.json()["query"] == "mine.thermal.png"
    assert by_json.json()["results"] == by_form.json()["results"]
    assert by_json.json()["results"][0]["path"] == str(path)
    assert "give the query once" in error_of(
        client.post("/search", json={"file": b64file(path), "query": "x"}), 400)
    assert "not valid base64" in error_of(
        client.post("/search", json={"file": {"file": "!!", "filename": "a.png"}}), 400, "invalid_base64")
    error_of(client.post("/search", json={"file": "AAAA"}), 400, "invalid_request")
    assert client.app.state.anybind.uploads.path.is_dir()
    assert list(client.app.state.anybind.uploads.path.iterdir()) == []


@pytest.mark.parametrize("route, body", [
    ("/search", {"query": "x", "k": "5"}),
    ("/search", {"query": "x", "k": 5.0}),
    ("/v1/embeddings", {"input": "x", "dimensions": "DIM"}),
    ("/classify", {"file": "IMAGE", "labels": ["a", "b"], "top": "2"}),
])
def test_json_integers_must_be_json_integers(client, corpus, model, route, body):
    body = {k: (str(model.embed_dim) if v == "DIM" else b64file(find(corpus, "image")) if v == "IMAGE" else v)
            for k, v in body.items()}
    name = next(k for k in ("k", "dimensions", "top") if k in body)
    assert f"{name} must be an integer" in error_of(client.post(route, json=body), 400, "invalid_request")


def test_form_integers_stay_text(client, corpus, model):
    fields = {"query": (None, "x"), "k": (None, "2")}  # multipart text fields (no file)
    assert len(client.post("/search", files=fields).json()["results"]) == 2
    r = client.post("/v1/embeddings", files={"input": (None, "x"), "dimensions": (None, str(model.embed_dim))})
    assert r.status_code == 200, r.text
    path = find(corpus, "image")
    r = client.post("/classify", files={"file": (path.name, path.read_bytes())}, data={"labels": "a,b", "top": "1"})
    assert r.status_code == 200 and len(r.json()["top"]) == 1


@pytest.mark.parametrize("item", ["-1", "01", "00", "+1", "1.0", "abc", "1e2", " 1", "9" * 40])
def test_items_and_thumbs_refuse_the_same_ids(client, item):
    for path in (f"/items/{item}", f"/thumbs/{item}.png"):
        assert "row number" in error_of(client.get(path), 400, "invalid_id"), path


def test_items_and_thumbs_take_the_same_ids(client):
    for path in ("/items/0", "/thumbs/0.png", "/items/9", "/thumbs/9.png"):
        assert client.get(path).status_code == 200, path
    for path in ("/items/10", "/thumbs/10.png"):
        error_of(client.get(path), 404, "not_found")


GETS = ["/", "/static/app.js", "/healthz", "/info", "/v1/models", "/items/0", "/thumbs/0.png", "/metrics"]


@pytest.mark.parametrize("path", GETS)
def test_head_answers_every_get_route_with_its_headers_and_no_body(client, path):
    get = client.get(path)
    head = client.head(path)
    assert get.status_code == 200 and head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the counts change between the two requests
        assert int(head.headers["content-length"]) == len(get.content)


def test_every_get_route_takes_head(client):
    from binder.serve import api, classify, openai_compat, page

    routers = (api.open_router, api.api_router, openai_compat.router, classify.router, page.router)
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods]
    assert {r.path for r in routes} >= {"/", "/healthz", "/info", "/items/{item_id}", "/thumbs/{item_id}.png",
                                        "/v1/models", "/static/{name}", "/metrics"}
    assert [r.path for r in routes if "HEAD" not in r.methods] == []
    assert client.head("/items/-1").status_code == 400 and client.head("/thumbs/99.png").status_code == 404


@pytest.mark.parametrize("modality", ["depth", "thermal", "audio", "image"])
def test_preview_of_an_upload_is_the_png_a_result_gets(client, corpus, modality):
    path = find(corpus, modality)
    want = make_preview(path, modality)
    by_form = client.post("/preview", files={"file": (path.name, path.read_bytes())})
    assert by_form.status_code == 200, by_form.text
    assert by_form.headers["content-type"] == "image/png" and by_form.headers["x-anybind-modality"] == modality
    assert by_form.content == want
    by_json = client.post("/preview", json={"file": b64file(path)})
    assert by_json.content == want
    assert Image.open(io.BytesIO(by_json.content)).size[0] > 0
    assert list(client.app.state.anybind.uploads.path.iterdir()) == []


def test_preview_errors_name_the_upload_and_need_the_token(client, serve):
    message = error_of(client.post("/preview", files={"file": ("broken.depth.png", b"not a png")}), 422,
                       "preview_failed")
    assert "broken.depth.png" in message and "anybind-serve-" not in message
    error_of(client.post("/preview", files={"file": ("run.exe", b"MZ")}), 415)
    error_of(client.post("/preview", json={"nothing": 1}), 400)
    locked = serve(token="s3cret")
    error_of(locked.post("/preview", files={"file": ("a.png", b"x")}), 401, "unauthorized")
