"""Concurrent requests are encoded together: fewer encode calls than requests, the same vectors."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from serve_helpers import text_vector

from binder.errors import ModalityError
from binder.serve.batching import Batcher
from binder.serve.metrics import Metrics

TEXTS = [f"the digit {w}" for w in "zero one two three four five six seven eight nine".split()] * 2


def _embed_all(client) -> list[np.ndarray]:
    start = threading.Barrier(len(TEXTS))

    def one(text: str) -> np.ndarray:
        start.wait()
        r = client.post("/v1/embeddings", json={"input": text})
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["data"][0]["embedding"], dtype=np.float32)

    with ThreadPoolExecutor(len(TEXTS)) as pool:
        return list(pool.map(one, TEXTS))


def test_concurrent_requests_share_encodes_and_match_unbatched(serve, model):
    batched = serve(batch_window_ms=100, max_batch=64)
    vectors = _embed_all(batched)
    calls = batched.app.state.anybind.metrics.total_encode_calls()
    assert calls < len(TEXTS), f"{calls} encode calls for {len(TEXTS)} concurrent requests"
    single = serve(batching=False)
    alone = _embed_all(single)
    assert single.app.state.anybind.metrics.total_encode_calls() == len(TEXTS)
    for text, a, b in zip(TEXTS, vectors, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, text_vector(model, text), atol=1e-5)
    assert "anybind_encode_batch_size_bucket" in batched.get("/metrics").text


class Doubling:
    """A stand-in model: 2-d unit vectors; an input holding NaN comes out as NaN."""

    embed_dim = 2

    def __init__(self):
        self.calls: list[int] = []
        self.thread: set[str] = set()

    def modality(self, name):
        if name != "x":
            raise ModalityError(None, f"no modality {name!r}")
        return self

    def collate(self, items):
        return torch.stack(items)

    def encode_rows(self, name, batch):
        self.calls.append(len(batch))
        self.thread.add(threading.current_thread().name)
        if (batch == -1).any() and len(batch) > 1:
            raise RuntimeError("cannot take -1 in a batch")
        z = torch.nn.functional.normalize(batch, dim=-1)
        bad = [i for i in range(len(z)) if not torch.isfinite(z[i]).all() or (batch[i] == -1).any()]
        return z, bad


def test_a_bad_row_fails_only_its_request_and_a_refused_batch_is_retried_alone():
    model = Doubling()
    batcher = Batcher(model, window_s=0.2, max_batch=8, metrics=Metrics())
    try:
        inputs = [torch.tensor([1.0, 0.0]), torch.tensor([float("nan"), 1.0]), torch.tensor([0.0, 2.0])]
        futures = [batcher.submit("x", t) for t in inputs]
        assert np.allclose(futures[0].result(5), [1, 0]) and np.allclose(futures[2].result(5), [0, 1])
        with pytest.raises(ModalityError, match="non-finite"):
            futures[1].result(5)
        assert model.calls == [3]
        futures = [batcher.submit("x", t) for t in (torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 4.0]))]
        assert np.allclose(futures[1].result(5), [0.6, 0.8])
        with pytest.raises(ModalityError):
            futures[0].result(5)
        assert model.calls[1:] == [2, 1, 1]
        with pytest.raises(ModalityError, match="no modality"):
            batcher.submit("y", torch.zeros(2)).result(5)
        assert batcher.call(lambda m: threading.current_thread().name).result(5) == "anybind-encode"
        assert model.thread == {"anybind-encode"}
    finally:
        batcher.close()


def test_max_batch_one_never_batches():
    model = Doubling()
    batcher = Batcher(model, window_s=0.2, max_batch=1)
    try:
        futures = [batcher.submit("x", torch.tensor([1.0, float(i)])) for i in range(5)]
        [f.result(5) for f in futures]
        assert model.calls == [1] * 5
    finally:
        batcher.close()


class Tight(Doubling):
    """A stand-in model on a device that runs out of memory above ``fits`` rows, and for any row holding
    a value above 4 (an item too big even alone)."""

    input_device = torch.device("cpu")

    def __init__(self, fits: int):
        super().__init__()
        self.fits = fits

    def encode_rows(self, name, batch):
        if len(batch) > self.fits or (batch > 4).any():
            self.calls.append(len(batch))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().encode_rows(name, batch)


def test_out_of_memory_halves_the_batch_and_later_batches_keep_the_size_that_fitted():
    model = Tight(fits=2)
    batcher = Batcher(model, window_s=0.3, max_batch=8, metrics=Metrics())
    try:
        inputs = [torch.tensor([1.0, float(i)]) for i in range(4)] + [torch.tensor([9.0, 0.0])]
        futures = [batcher.submit("x", t) for t in inputs]
        for f, t in zip(futures[:4], inputs):
            assert np.allclose(f.result(5), torch.nn.functional.normalize(t, dim=0).numpy())
        with pytest.raises(ModalityError, match="does not fit in cpu memory even alone"):
            futures[4].result(5)
        assert model.calls == [5, 2, 2, 1] and batcher.limit.size == 2  # one item too big alone leaves it
        model.calls.clear()
        futures = [batcher.submit("x", torch.tensor([1.0, float(i)])) for i in range(3)]
        [f.result(5) for f in futures]
        assert model.calls == [2, 1]
    finally:
        batcher.close()
