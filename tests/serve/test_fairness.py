"""Heavy requests cannot starve light ones, and what one request may cost is bounded: the labels ×
templates of ``/classify`` are capped (413), label sets are encoded in chunks that take turns with
light requests on the worker, and a request past ``--request-timeout`` is a 503 JSON error whose
remaining work is dropped."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from serve_helpers import b64file, error_of, find

import binder.serve.classify as serve_classify
from binder.embed.classify import label_embeddings
from binder.serve.batching import BULK, LIGHT, Batcher


@pytest.fixture
def slow_labels(monkeypatch):
    """Label encoding made slow (``per_label`` seconds a label) and counted, as a large model's is."""
    calls: list[int] = []

    def slow(model, labels, templates):
        calls.append(len(labels))
        time.sleep(slow.per_label * len(labels))
        return label_embeddings(model, labels, templates)

    slow.per_label = 0.02
    monkeypatch.setattr(serve_classify, "label_embeddings", slow)
    return slow, calls


def _classify_body(corpus, labels, templates=None):
    body = {"file": b64file(find(corpus, "image")), "labels": labels}
    if templates is not None:
        body["templates"] = templates
    return body


def test_labels_times_templates_over_the_cap_is_413_before_any_work(client, corpus, slow_labels):
    _, calls = slow_labels
    labels = [f"label {i}" for i in range(1000)]
    templates = [f"a photo of {{}}, take {i}" for i in range(64)]
    started = time.monotonic()
    r = client.post("/classify", json=_classify_body(corpus, labels, templates))
    message = error_of(r, 413, "too_many_prompts")
    assert "64,000 prompts" in message and "--max-classify-prompts" in message
    assert time.monotonic() - started < 5 and calls == []
    assert client.post("/classify", json=_classify_body(corpus, labels[:64], templates)).status_code == 200


def test_a_heavy_classify_does_not_starve_a_text_search(client, corpus, slow_labels):
    slow, calls = slow_labels
    labels = [f"label {i}" for i in range(200)]  # 200 x 0.02 s: 4 s of label encoding
    with ThreadPoolExecutor(2) as pool:
        heavy = pool.submit(client.post, "/classify", json=_classify_body(corpus, labels))
        while not calls:  # the heavy request's encoding has begun
            time.sleep(0.01)
        started = time.monotonic()
        light = client.post("/search", json={"query": "the digit seven", "k": 3})
        waited = time.monotonic() - started
        assert light.status_code == 200
        assert not heavy.done(), "the heavy request should still be running"
        r = heavy.result(60)
    assert r.status_code == 200, r.text
    assert waited < 1.0, f"a text search waited {waited:.2f} s behind a heavy /classify"
    assert max(calls) <= serve_classify.CHUNK_LABELS and sum(calls) == len(labels)
    classes = label_embeddings(client.app.state.anybind.model, labels)  # chunks give the same answer
    assert r.json()["label"] == labels[int(np.argmax(classes @ _image_vector(client, corpus)))]


def _image_vector(client, corpus):
    model = client.app.state.anybind.model
    return model.embed_files("image", [find(corpus, "image")])[0].float().numpy()


def test_a_request_past_its_time_budget_is_a_503_and_its_remaining_work_is_dropped(serve, corpus, slow_labels):
    slow, calls = slow_labels
    slow.per_label = 0.05
    client = serve(request_timeout_s=0.5)
    labels = [f"label {i}" for i in range(200)]  # 10 s of work
    started = time.monotonic()
    message = error_of(client.post("/classify", json=_classify_body(corpus, labels)), 503, "timeout")
    assert "--request-timeout" in message and time.monotonic() - started < 3
    time.sleep(0.5)
    assert sum(calls) < 40, f"{sum(calls)} labels were encoded for a request that had given up"
    assert client.post("/search", json={"query": "x", "k": 1}).status_code == 200


class Sleeper:
    """A stand-in model: each encode takes ``seconds``; vectors are the inputs normalised."""

    embed_dim = 2

    def __init__(self, seconds: float):
        self.seconds = seconds

    def modality(self, name):
        return self

    def collate(self, items):
        return torch.stack(items)

    def encode_rows(self, name, batch):
        time.sleep(self.seconds)
        return torch.nn.functional.normalize(batch, dim=-1), []


def test_the_worker_alternates_between_the_light_and_the_bulk_lane():
    model = Sleeper(0.001)
    batcher = Batcher(model, window_s=0.0, max_batch=4)
    order: list[str] = []
    gate = threading.Event()
    try:
        batcher.call(lambda m: gate.wait(5))  # holds the worker while both lanes fill up
        bulk = [batcher.call(lambda m, i=i: order.append(f"bulk{i}") or time.sleep(0.05), BULK) for i in range(20)]
        light = [batcher.call(lambda m, i=i: order.append(f"light{i}"), LIGHT) for i in range(3)]
        gate.set()
        for future in light:
            future.result(5)
        # the gate was a light call: the bulk lane has the next turn, then they alternate
        assert order[:6] == ["bulk0", "light0", "bulk1", "light1", "bulk2", "light2"], order
        assert not bulk[-1].done()  # light work did not wait for all the bulk work
        vector = batcher.submit("x", torch.tensor([3.0, 4.0])).result(5)  # a light encode, served between
        assert np.allclose(vector, [0.6, 0.8]) and not bulk[-1].done()
        for future in bulk:
            future.result(10)
    finally:
        batcher.close()
