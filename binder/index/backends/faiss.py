"""faiss-cpu backends (optional extra ``anybind[faiss]``): flat, HNSW and IVF-PQ.

All use inner product on unit rows (= cosine). Filtered searches pass an id selector into faiss;
when the allowed rows are few, or faiss returns fewer than ``k`` of them (a graph or cell search
can run dry inside a narrow filter), the query is answered by exact search over the allowed rows,
so a filter never silently shortens the results. IVF-PQ re-ranks its candidates with exact scores
from the stored float32 vectors, which lifts recall well above what the PQ codes alone give.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from binder.index.backends.base import (
    SUBSET_EXACT_MAX_ROWS,
    Backend,
    BackendError,
    Results,
    default_threads,
    empty_results,
    ivf_lists,
    order_ties,
    progress_bar,
)
from binder.index.backends.exact import exact_search
from binder.io import atomic_path

ADD_BLOCK = 65_536
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
# measured: recall@10 0.949 at 16x exact speed on 1M clustered vectors (docs/guides/performance.md)
HNSW_EF_SEARCH = 256
IVF_NPROBE = 64
IVFPQ_RERANK = 20  # candidates per wanted result re-scored exactly
TRAIN_PER_CENTROID = 40  # training rows per k-means centroid (faiss asks for at least 39)
RERANK_GATHER_ROWS = 16_384  # float32 rows gathered at once for re-ranking (32 MB at D=512)


def import_faiss():
    """The faiss module, or a BackendError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise BackendError("the flat, hnsw and ivfpq backends need faiss: pip install 'anybind[faiss]' "
                           "(or pip install faiss-cpu); the exact backend needs nothing extra") from None
    faiss.omp_set_num_threads(default_threads())
    return faiss


class FaissBackend(Backend):
    """Shared search logic; subclasses build ``self.index`` and give per-search parameters."""

    def __init__(self, vectors: np.ndarray, index: Any = None, progress: bool = False, **params):
        super().__init__(vectors)
        self.faiss = import_faiss()
        self.params = {**self.defaults(), **{k: v for k, v in params.items() if v is not None}}
        start = time.perf_counter()
        self.index = index if index is not None else self._build(progress)
        self.build_seconds = 0.0 if index is not None else time.perf_counter() - start
        if self.index.ntotal != len(self.vectors):
            raise BackendError(f"faiss index holds {self.index.ntotal} rows, the vectors {len(self.vectors)}")
        self._configure()

    def defaults(self) -> dict[str, Any]:
        return {}

    def _empty_index(self) -> Any:
        """The untrained, empty faiss index this backend fills (each subclass builds its own)."""
        raise NotImplementedError

    def _build(self, progress: bool) -> Any:
        index = self._empty_index()
        self._train(index)
        bar = progress_bar(len(self.vectors), f"building {self.name} index", progress)
        for s in range(0, len(self.vectors), ADD_BLOCK):
            index.add(self.vectors[s:s + ADD_BLOCK])
            bar.update(min(ADD_BLOCK, len(self.vectors) - s))
        bar.close()
        return index

    def _train(self, index: Any) -> None:
        """Fit the index's quantizers (nothing to fit for flat and HNSW)."""

    def _configure(self) -> None:
        """Apply search-time parameters stored on the index itself."""

    def _search_params(self, selector: Any, k: int) -> Any:
        return self.faiss.SearchParameters(sel=selector) if selector is not None else None

    def _fetch(self, k: int) -> int:
        """How many candidates to ask faiss for to return ``k`` results."""
        return k

    def _search(self, q: np.ndarray, k: int, ids: np.ndarray | None) -> Results:
        if k <= 0 or len(self.vectors) == 0 or (ids is not None and len(ids) == 0):
            return empty_results(len(q), max(k, 0))
        if ids is not None and len(ids) <= max(SUBSET_EXACT_MAX_ROWS, k):
            return exact_search(self.vectors, q, k, ids)
        selector = None if ids is None else self._selector(ids)
        fetch = min(self._fetch(k), len(self.vectors) if ids is None else len(ids))
        scores, found = self.index.search(q, fetch, params=self._search_params(selector, k))
        res = self._finish(q, scores, found.astype(np.int64), k)
        self._refill_short_rows(q, k, ids, res)
        return res

    def _finish(self, q: np.ndarray, scores: np.ndarray, found: np.ndarray, k: int) -> Results:
        """faiss output → Results of width ``k`` (IVF-PQ overrides this to re-rank)."""
        out = empty_results(len(q), k)
        w = min(k, found.shape[1])
        out.scores[:, :w], out.ids[:, :w] = scores[:, :w], found[:, :w]
        out.scores[out.ids < 0] = -np.inf
        return out

    def _refill_short_rows(self, q: np.ndarray, k: int, ids: np.ndarray | None, res: Results) -> None:
        """Queries that got fewer than min(k, allowed) results are answered exactly instead."""
        want = min(k, len(self.vectors) if ids is None else len(ids))
        short = np.flatnonzero((res.ids[:, :want] < 0).any(axis=1))
        if len(short):
            redo = exact_search(self.vectors, q[short], k, ids)
            res.scores[short], res.ids[short] = redo.scores, redo.ids

    def _selector(self, ids: np.ndarray) -> Any:
        mask = np.zeros(len(self.vectors), dtype=bool)
        mask[ids] = True
        bits = np.packbits(mask, bitorder="little")
        sel = self.faiss.IDSelectorBitmap(len(self.vectors), self.faiss.swig_ptr(bits))
        sel._bits = bits  # keep the buffer alive as long as the selector
        return sel

    def memory_bytes(self) -> int:
        """Size of the faiss index as written to disk (its own copy of the vectors for flat/HNSW)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.faiss")
            self.faiss.write_index(self.index, path)
            return os.path.getsize(path)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (temp file + rename)."""
        path = Path(path)
        with atomic_path(path, durable=False) as tmp:  # a cache: rebuilt if lost
            self.faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: str | os.PathLike, vectors: np.ndarray, **params) -> FaissBackend:
        """An index written by ``save`` over the same ``vectors``."""
        faiss = import_faiss()
        return cls(vectors, index=faiss.read_index(str(path)), **params)


class FlatBackend(FaissBackend):
    """faiss IndexFlatIP: exact, a second copy of the vectors inside faiss."""

    name = "flat"

    def _empty_index(self) -> Any:
        return self.faiss.IndexFlatIP(self.vectors.shape[1])


class HNSWBackend(FaissBackend):
    """Graph search (HNSW, M links per node); efSearch trades speed for recall."""

    name = "hnsw"

    def defaults(self) -> dict[str, Any]:
        return {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}

    def _empty_index(self) -> Any:
        index = self.faiss.IndexHNSWFlat(self.vectors.shape[1], int(self.params["M"]), self.faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.params["ef_construction"])
        return index

    def _search_params(self, selector: Any, k: int) -> Any:
        p = self.faiss.SearchParametersHNSW()
        p.efSearch = max(int(self.params["ef_search"]), k)  # the candidate list must hold k results
        if selector is not None:
            p.sel = selector
        return p


class IVFPQBackend(FaissBackend):
    """Inverted lists of PQ codes (nlist cells, m bytes a vector), candidates re-ranked exactly."""

    name = "ivfpq"

    def defaults(self) -> dict[str, Any]:
        return {"nlist": None, "m": None, "nbits": None, "nprobe": IVF_NPROBE, "rerank": IVFPQ_RERANK}

    def _empty_index(self) -> Any:
        n, d = self.vectors.shape
        nlist = int(self.params["nlist"] or ivf_lists(n))
        m = int(self.params["m"] or _pq_subquantizers(d))
        nbits = int(self.params["nbits"] or max(1, min(8, int(np.log2(max(2, n // TRAIN_PER_CENTROID))))))
        self.quantizer = self.faiss.IndexFlatIP(d)
        return self.faiss.IndexIVFPQ(self.quantizer, d, nlist, m, nbits, self.faiss.METRIC_INNER_PRODUCT)

    def _train(self, index: Any) -> None:
        n = len(self.vectors)
        sample = min(n, TRAIN_PER_CENTROID * max(index.nlist, 1 << index.pq.nbits))
        rows = np.sort(np.random.default_rng(0).choice(n, sample, replace=False)) if sample < n else slice(None)
        index.train(self.vectors[rows])

    def _search_params(self, selector: Any, k: int) -> Any:
        p = self.faiss.SearchParametersIVF()
        p.nprobe = int(self.params["nprobe"])
        if selector is not None:
            p.sel = selector
        return p

    def _fetch(self, k: int) -> int:
        return k * max(1, int(self.params["rerank"]))

    def _finish(self, q: np.ndarray, scores: np.ndarray, found: np.ndarray, k: int) -> Results:
        """Re-score each query's candidates against the stored float32 rows; keep the best k."""
        if int(self.params["rerank"]) <= 0:
            return super()._finish(q, scores, found, k)
        exact = np.empty(found.shape, np.float32)
        step = max(1, RERANK_GATHER_ROWS // found.shape[1])
        for s in range(0, len(q), step):
            cand = found[s:s + step]
            rows = self.vectors[np.where(cand < 0, 0, cand)]  # (step, C, D) gathered float32 rows
            exact[s:s + step] = np.einsum("qd,qcd->qc", q[s:s + step], rows)
        exact[found < 0] = -np.inf
        w = min(k, found.shape[1])
        part = np.argpartition(-exact, w - 1, axis=1)[:, :w]
        out = empty_results(len(q), k)
        out.scores[:, :w] = np.take_along_axis(exact, part, 1)
        out.ids[:, :w] = np.take_along_axis(found, part, 1)
        out.ids[~np.isfinite(out.scores)] = -1
        order_ties(out)
        return out


def _pq_subquantizers(d: int) -> int:
    """PQ sub-vector count: about one byte per 8 dimensions, a divisor of ``d``."""
    target = max(1, d // 8)
    return max(m for m in range(1, target + 1) if d % m == 0)
