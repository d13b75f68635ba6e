"""The API's answers: OpenAI-compatible embeddings equal to the model's own, the search response
the page reads, classification as ``anybind classify`` gives it, items, health and metrics."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from serve_helpers import b64file, file_vector, find, sample, text_vector

from binder.embed.classify import label_embeddings
from binder.index.query import embed_query
from binder.index.search import EmbeddingIndex

RESULT_KEYS = {"id", "score", "rank_score", "modality", "path", "name", "url", "thumb"}


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok", "generation": 1}


def test_text_embeddings_are_openai_shaped_unit_vectors_equal_to_encode(client, model):
    r = client.post("/v1/embeddings", json={"input": ["the digit two", "a dog"], "model": "whatever"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == "tiny-test"
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"} and body["usage"]["prompt_tokens"] > 0
    for i, (row, text) in enumerate(zip(body["data"], ["the digit two", "a dog"])):
        assert row["object"] == "embedding" and row["index"] == i
        vec = np.asarray(row["embedding"], dtype=np.float32)
        assert vec.shape == (model.embed_dim,) and abs(np.linalg.norm(vec) - 1) < 1e-4
        np.testing.assert_allclose(vec, text_vector(model, text), atol=1e-5)


def test_a_single_string_input_and_base64_encoding(client, model):
    r = client.post("/v1/embeddings", json={"input": "hello", "encoding_format": "base64"})
    (row,) = r.json()["data"]
    vec = np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, text_vector(model, "hello"), atol=1e-5)


@pytest.mark.parametrize("modality", ["audio", "depth", "image", "imu", "speech_units"])
def test_file_embeddings_base64_and_multipart_equal_the_model(client, model, corpus, modality):
    path = find(corpus, modality)
    want = file_vector(model, modality, path)
    r = client.post("/v1/embeddings", json={"input": [b64file(path)]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], want, atol=1e-5)
    r = client.post("/v1/embeddings", files=[("file", (path.name, path.read_bytes()))], data={"input": "x"})
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    np.testing.assert_allclose(data[0]["embedding"], text_vector(model, "x"), atol=1e-5)  # form order kept
    np.testing.assert_allclose(data[1]["embedding"], want, atol=1e-5)


def test_models_lists_the_served_model(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-test"


def test_search_has_the_page_contract_and_the_cli_ranking(client, model, base_index):
    # one file of each modality: no modality's spread can be measured, so the ranking compared is raw
    # (the mixes over an index that has the rows for them: test_search_forms)
    r = client.post("/search", json={"query": "a photo of a dog", "k": 4, "modality": None, "mix": "raw"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"query", "generation", "mix", "ranked_by", "results"}
    assert body["query"] == "a photo of a dog" and body["generation"] == 1
    assert body["mix"] == body["ranked_by"] == "raw"
    index = EmbeddingIndex.open(base_index)
    want = index.search(embed_query(model, "a photo of a dog"), 4)
    assert [h["id"] for h in body["results"]] == [h.row for h in want]
    for hit, ref in zip(body["results"], want):
        assert set(hit) == RESULT_KEYS
        assert hit["path"] == ref.meta["path"] and hit["modality"] == ref.meta["modality"]
        assert hit["name"] == ref.meta["path"].rsplit("/", 1)[-1]
        assert hit["url"] == f"/items/{hit['id']}" and hit["thumb"] == f"/thumbs/{hit['id']}.png"
        assert hit["score"] == pytest.approx(ref.score, abs=1e-5) and hit["rank_score"] == hit["score"]


def test_search_modality_filter_and_k(client):
    r = client.post("/search", json={"query": "anything", "k": 3, "modality": "audio"})
    assert [h["modality"] for h in r.json()["results"]] == ["audio"]
    assert len(client.post("/search", json={"query": "anything", "k": 100}).json()["results"]) == 10


def test_search_by_expression_and_indexed_file_matches_the_cli(client, model, corpus, base_index):
    wav, depth = find(corpus, "audio"), find(corpus, "depth")
    expr = f"{wav} + 0.5*{depth} - the digit two"
    r = client.post("/search", json={"query": expr, "k": 3, "mix": "raw"})
    assert r.status_code == 200, r.text
    want = EmbeddingIndex.open(base_index).search(embed_query(model, expr), 3)
    assert [h["id"] for h in r.json()["results"]] == [h.row for h in want]
    assert [h["score"] for h in r.json()["results"]] == pytest.approx([h.score for h in want], abs=1e-5)


def test_search_by_uploaded_file(client, model, corpus, base_index):
    path = find(corpus, "thermal")
    r = client.post("/search", files={"file": ("mine.thermal.png", path.read_bytes())}, data={"k": "2", "mix": "raw"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "mine.thermal.png" and len(body["results"]) == 2
    assert body["results"][0]["path"] == str(path) and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_classify_multipart_and_json_agree_with_label_embeddings(client, model, corpus):
    path = find(corpus, "image")
    labels = ["a cat", "a dog", "the digit two"]
    classes = label_embeddings(model, labels, ("a photo of {}", "{}"))
    scores = classes @ file_vector(model, "image", path)
    r = client.post("/classify", files={"file": (path.name, path.read_bytes())},
                    data={"labels": ",".join(labels), "template": ["a photo of {}", "{}"], "top": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modality"] == "image" and len(body["top"]) == 2
    assert body["label"] == labels[int(np.argmax(scores))]
    assert body["score"] == pytest.approx(float(scores.max()), abs=1e-5)
    r = client.post("/classify", json={"file": b64file(path), "labels": labels,
                                       "templates": ["a photo of {}", "{}"]})
    assert r.json()["label"] == body["label"] and len(r.json()["top"]) == 3
    assert sum(t["prob"] for t in r.json()["top"]) == pytest.approx(1.0, abs=1e-4)


def test_items_stream_the_indexed_file_with_its_type(client, base_index):
    rows = EmbeddingIndex.open(base_index).metadata
    for i, row in enumerate(rows):
        r = client.get(f"/items/{i}")
        assert r.status_code == 200
        assert r.content == open(row["path"], "rb").read()
        if row["path"].endswith(".png"):
            assert r.headers["content-type"] == "image/png"
        if row["path"].endswith(".wav"):
            assert r.headers["content-type"] in ("audio/x-wav", "audio/wav")
        assert r.headers["x-content-type-options"] == "nosniff"


def test_info(client, model):
    body = client.get("/info").json()
    assert body["dim"] == model.embed_dim and body["items"] == 10 and body["generation"] == 1
    assert "audio" in body["index_modalities"] and body["token_required"] is False
    assert body["mixes"] == ["calibrated", "centered", "interleave", "raw"] and body["default_mix"] == "calibrated"


def test_metrics_count_routes_statuses_batches_and_generation(client, serve):
    client.post("/search", json={"query": "x"})
    client.post("/search", json={"query": ""})
    client.get("/items/999")
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=")
    text = r.text
    assert sample(text, "anybind_requests_total", route="/search", method="POST", status="200") == 1
    assert sample(text, "anybind_requests_total", route="/search", method="POST", status="400") == 1
    assert sample(text, "anybind_requests_total", route="/items/{item_id}", method="GET", status="404") == 1
    assert '# TYPE anybind_request_duration_seconds histogram' in text
    assert sample(text, "anybind_request_duration_seconds_bucket", route="/search", le="+Inf") == 2
    assert sample(text, "anybind_encode_batch_size_count", modality="text") == 1
    assert sample(text, "anybind_encode_calls_total", modality="text") == 1
    assert sample(text, "anybind_index_generation") == 1 and sample(text, "anybind_index_rows") == 10
    assert sample(text, "anybind_batching_enabled") == 1 and sample(text, "anybind_encode_queue_depth") == 0
    assert sample(text, "anybind_index_reloads_total") == 0
    # a registry of the app's own: a second app counts from zero, the process-wide registry holds nothing of it
    other = serve().get("/metrics").text
    assert sample(other, "anybind_requests_total", route="/search", method="POST", status="200") is None
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("anybind_index_rows") is None


def test_metrics_speak_openmetrics_when_asked(client):
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF") and "anybind_index_rows 10" in r.text
