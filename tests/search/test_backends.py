"""Every backend answers like brute force: exact ones equal it (scores and order), approximate ones
are measured against it (recall@10), and filters never shorten the results."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from search_helpers import brute_force, clustered, unit

from binder.index import backends
from binder.index.backends import BackendError, make_backend, recall_at_k, resolve_name
from binder.index.backends import faiss as faiss_backends
from binder.index.backends.exact import ExactBackend, exact_search

N, D = 3000, 32


@pytest.fixture(scope="module")
def data(rng):
    return unit(rng, N, D), unit(rng, 25, D)


def assert_same(res, ref, k):
    for r, (s, ids) in enumerate(ref):
        got = res.ids[r][res.ids[r] >= 0]
        assert got.tolist() == ids.tolist()
        np.testing.assert_allclose(res.scores[r][: len(got)], s, rtol=0, atol=1e-5)
        assert (res.ids[r][len(got):] == -1).all() and np.isneginf(res.scores[r][len(got):]).all()
        assert res.ids.shape[1] == k


@pytest.mark.parametrize("block", [None, 64, 1000, 4096])
@pytest.mark.parametrize("k", [1, 10, 57])
def test_exact_equals_brute_force(data, block, k):
    x, q = data
    assert_same(exact_search(x, q, k, block=block), brute_force(x, q, k), k)


def test_exact_filter_and_k_beyond_filtered_count(data):
    x, q = data
    allowed = np.zeros(N, bool)
    allowed[[5, 17, 900, 2999]] = True
    res = ExactBackend(x).search(q, 10, allowed)
    assert_same(res, brute_force(x, q, 10, allowed), 10)
    assert ((res.ids >= 0).sum(axis=1) == 4).all()


def test_exact_filter_keeps_k_of_a_large_subset(data):
    x, q = data
    allowed = np.arange(N) % 3 == 1
    assert_same(ExactBackend(x).search(q, 20, allowed), brute_force(x, q, 20, allowed), 20)


def test_exact_k_larger_than_index_and_empty_filter(data):
    x, q = data
    small = x[:7]
    assert_same(ExactBackend(small).search(q, 10), brute_force(small, q, 10), 10)
    res = ExactBackend(x).search(q, 5, np.zeros(N, bool))
    assert (res.ids == -1).all()


def test_ties_are_ordered_by_row_id():
    x = np.tile(np.eye(4, dtype=np.float32), (3, 1))  # rows 0, 4, 8 identical
    res = exact_search(x, np.eye(4, dtype=np.float32)[:1], 3, block=5)
    assert res.ids[0].tolist() == [0, 4, 8]


def test_queries_are_normalized_and_dimension_checked(data):
    x, q = data
    a = ExactBackend(x).search(q[:3] * 7.0, 5)
    assert_same(a, brute_force(x, q[:3], 5), 5)
    with pytest.raises(BackendError, match="dimension"):
        ExactBackend(x).search(np.ones((1, D + 1)), 5)


def test_faiss_flat_equals_exact(data):
    x, q = data
    assert_same(make_backend("flat", x).search(q, 10), brute_force(x, q, 10), 10)


@pytest.fixture(scope="module")
def structured(rng):
    x = clustered(rng, 6000, 64)
    q = clustered(np.random.default_rng(7), 60, 64)
    return x, q, exact_search(x, q, 10)


@pytest.mark.parametrize("name,params,floor", [
    ("hnsw", {"ef_search": 256}, 0.95),
    ("ivfpq", {}, 0.95),
    ("ivfpq", {"rerank": 0, "nprobe": 4}, 0.0),
])
def test_approximate_recall_against_exact(structured, name, params, floor):
    x, q, truth = structured
    res = make_backend(name, x, **params).search(q, 10)
    recall = recall_at_k(res.ids, truth.ids)
    assert recall >= floor
    assert 0.0 <= recall <= 1.0
    # what comes back is scored exactly (unit inner products) and sorted best first
    assert (np.diff(res.scores, axis=1) <= 1e-6).all()


def test_ivfpq_reranking_lifts_recall(structured):
    x, q, truth = structured
    raw = make_backend("ivfpq", x, rerank=0, nprobe=8).search(q, 10)
    reranked = make_backend("ivfpq", x, rerank=20, nprobe=8).search(q, 10)
    assert recall_at_k(reranked.ids, truth.ids) > recall_at_k(raw.ids, truth.ids)
    np.testing.assert_allclose(reranked.scores, np.einsum("qd,qkd->qk", q, x[reranked.ids]), atol=1e-5)


@pytest.mark.parametrize("name", ["flat", "hnsw", "ivfpq"])
@pytest.mark.parametrize("subset_limit", [0, 10**9])  # faiss id selector path / exact-over-subset path
def test_approximate_filters_return_k_allowed_rows(structured, monkeypatch, name, subset_limit):
    monkeypatch.setattr(faiss_backends, "SUBSET_EXACT_MAX_ROWS", subset_limit)
    x, q, _ = structured
    allowed = np.arange(len(x)) % 50 == 3  # 120 rows, scattered over the clusters
    res = make_backend(name, x).search(q, 30, allowed)
    assert (res.ids >= 0).all(), "a filter must not shorten the results"
    assert allowed[res.ids].all()
    ref = brute_force(x, q, 30, allowed)
    if name == "flat" or subset_limit:
        assert_same(res, ref, 30)
    few = np.zeros(len(x), bool)
    few[[1, 2, 3]] = True
    res = make_backend(name, x).search(q, 10, few)
    assert ((res.ids >= 0).sum(axis=1) == 3).all() and few[res.ids[:, :3]].all()


def test_auto_threshold_and_unknown_name():
    assert resolve_name("auto", backends.AUTO_EXACT_MAX_ROWS) == "exact"
    assert resolve_name("auto", backends.AUTO_EXACT_MAX_ROWS + 1) == backends.AUTO_APPROX
    with pytest.raises(BackendError, match="unknown search backend"):
        resolve_name("annoy", 10)


def test_missing_faiss_is_a_clear_error(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(BackendError, match=r"pip install 'anybind\[faiss\]'"):
        make_backend("hnsw", data[0])
    assert make_backend("exact", data[0]).search(data[1], 3).ids.shape == (25, 3)


def test_faiss_index_round_trips_through_a_file(structured, tmp_path):
    x, q, _ = structured
    built = make_backend("hnsw", x)
    built.save(tmp_path / "h.faiss")
    loaded = faiss_backends.HNSWBackend.load(tmp_path / "h.faiss", x)
    np.testing.assert_array_equal(loaded.search(q, 10).ids, built.search(q, 10).ids)
    assert built.memory_bytes() > x.nbytes


def test_recall_at_k_counts_overlap():
    truth = np.array([[1, 2, 3, 4]])
    assert recall_at_k(np.array([[4, 3, 9, -1]]), truth) == 0.5
