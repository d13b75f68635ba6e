"""Nearest-neighbour backends over unit vectors: inner product = cosine similarity.

``exact`` is numpy only (float32 BLAS matmul over row blocks, a running top-k); ``flat``, ``hnsw``
and ``ivfpq`` use faiss-cpu, an optional extra. Every backend answers the same call,
``search(queries, k, allowed)``, with ``(scores, ids)`` arrays of shape (Q, k) best first, padded
with score ``-inf`` and id ``-1`` where fewer than ``k`` rows qualify. ``allowed`` (a boolean row
mask, e.g. one modality) is applied inside the search, so ``k`` allowed rows come back whenever
``k`` exist.
"""
from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterator

import numpy as np
from tqdm import tqdm

from binder.errors import AnybindError

# ``auto`` uses exact search up to this many rows (one query over 1M x 512 float32 is ~2 GB of
# reads; batched queries stay BLAS-bound) and the default approximate index above it.
AUTO_EXACT_MAX_ROWS = 1_000_000
AUTO_APPROX = "hnsw"
BACKENDS = ("auto", "exact", "flat", "hnsw", "ivfpq")
# A filtered faiss search falls back to exact search over the allowed rows when they are this few.
SUBSET_EXACT_MAX_ROWS = 50_000
SCORE_BUFFER_ELEMENTS = 2 * 1024 * 1024  # a (rows, queries) block of scores: 8 MB, merged while in cache


class BackendError(AnybindError):
    """A search backend is unknown, unavailable (faiss not installed) or misused."""


@dataclass(frozen=True)
class Results:
    """Best-first ``scores`` (Q, k) float32 and row ``ids`` (Q, k) int64; id -1 marks padding."""

    scores: np.ndarray
    ids: np.ndarray


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float32 2-D array of unit rows (zero rows stay zero)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _empty(q: int, k: int) -> Results:
    return Results(np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64))


def _chunks(n: int, ids: np.ndarray | None, block: int) -> Iterator[tuple[slice | np.ndarray, np.ndarray | None]]:
    """Row blocks to scan: contiguous slices, or slices of an explicit id array (filtered search)."""
    if ids is None:
        for s in range(0, n, block):
            yield slice(s, min(n, s + block)), None
    else:
        for s in range(0, len(ids), block):
            part = ids[s:s + block]
            yield part, part


def _merge(best_s: np.ndarray, best_i: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int) -> None:
    """Fold a block's (B, Q) ``scores`` for rows ``ids`` (B,) into the running top-k, in place.

    Only queries whose best score in the block beats their current k-th best are looked at, and
    only their entries above it can enter; after the first blocks these are few, so the merge
    costs one max-reduction over the block (a full comparison + nonzero pass measured 20x slower).
    """
    thresh = best_s[:, -1]
    hot = np.flatnonzero(scores.max(axis=0) > thresh)
    if len(hot) == 0:
        return
    sub = np.take(scores, hot, axis=1)
    cols, r = np.divmod(np.flatnonzero(sub > thresh[hot][None, :]), len(hot))  # 1-D nonzero is ~4x faster
    if len(r) > len(hot) * k * 4:  # early blocks: partition each hot query's column instead
        by_query = np.ascontiguousarray(sub.T)
        kk = min(k, by_query.shape[1])
        part = np.argpartition(by_query, by_query.shape[1] - kk, axis=1)[:, -kk:]
        cand_s, cand_i = np.take_along_axis(by_query, part, 1), ids[part]
        all_s, all_i = np.concatenate([best_s[hot], cand_s], 1), np.concatenate([best_i[hot], cand_i], 1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s[hot] = np.take_along_axis(all_s, order, 1)
        best_i[hot] = np.take_along_axis(all_i, order, 1)
        return
    rows = hot[r]
    touched = np.unique(rows)
    q_rows = np.concatenate([np.repeat(touched, k), rows])
    all_s = np.concatenate([best_s[touched].ravel(), sub[cols, r]])
    all_i = np.concatenate([best_i[touched].ravel(), ids[cols]])
    order = np.lexsort((-all_s, q_rows))  # by query, then best score first
    q_sorted = q_rows[order]
    start = np.searchsorted(q_sorted, touched)
    take = (start[:, None] + np.arange(k)[None, :]).ravel()
    best_s[touched] = all_s[order][take].reshape(-1, k)
    best_i[touched] = all_i[order][take].reshape(-1, k)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, ids: np.ndarray | None = None,
                 block: int | None = None) -> Results:
    """Exact top-``k`` by inner product over ``vectors`` (or only rows ``ids``), best first.

    One float32 matmul per row block against the whole query batch keeps BLAS busy; the running
    top-k is merged per block (see ``_merge``). Ties keep the lower row id first. Scores are laid
    out rows × queries, and a block holds about ``SCORE_BUFFER_ELEMENTS`` of them so that the
    merge reads them while they are still in cache.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(vectors) if ids is None else len(ids)
    out = _empty(len(q), k)
    if k <= 0 or n == 0 or len(q) == 0:
        return out
    block = block or int(min(65_536, max(1024, SCORE_BUFFER_ELEMENTS // max(1, len(q)))))
    buf, q_t = np.empty((block, len(q)), np.float32), q.T
    for rows, row_ids in _chunks(len(vectors), ids, block):
        part = vectors[rows]
        scores = np.matmul(part, q_t, out=buf[:len(part)])  # (B, Q): rows × queries
        block_ids = np.arange(rows.start, rows.stop) if row_ids is None else np.asarray(row_ids, np.int64)
        _merge(out.scores, out.ids, scores, block_ids, k)
    _order_ties(out)
    return out


def _order_ties(res: Results) -> None:
    """Within equal scores, lower row id first (so results are deterministic); padding last."""
    ids = np.where(res.ids < 0, np.iinfo(np.int64).max, res.ids)
    for r in range(len(ids)):
        order = np.lexsort((ids[r], -res.scores[r]))
        res.scores[r], res.ids[r] = res.scores[r][order], res.ids[r][order]


class Backend(ABC):
    """A search structure over a fixed (N, D) matrix of unit rows."""

    name: ClassVar[str]

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors if _is_ready(vectors) else np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> Results:
        """Top-``k`` rows per query (rows unit-normalized first), only rows where ``allowed``."""
        q = unit_rows(queries)
        if q.shape[1] != self.vectors.shape[1]:
            raise BackendError(f"query has dimension {q.shape[1]} but the index holds {self.vectors.shape[1]}")
        if allowed is None:
            return self._search(q, k, None)
        ids = np.flatnonzero(np.asarray(allowed, dtype=bool))
        return self._search(q, k, ids)

    @abstractmethod
    def _search(self, q: np.ndarray, k: int, ids: np.ndarray | None) -> Results:
        """Search unit queries ``q``; ``ids`` (sorted) restricts the rows, None = all."""

    def memory_bytes(self) -> int:
        """Bytes this backend holds beyond the shared float32 vectors."""
        return 0


def _is_ready(x: np.ndarray) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 2


class ExactBackend(Backend):
    """Brute force: every row scored (see ``exact_search``). Needs nothing beyond numpy."""

    name = "exact"

    def _search(self, q: np.ndarray, k: int, ids: np.ndarray | None) -> Results:
        return exact_search(self.vectors, q, k, ids)


def make_backend(name: str, vectors: np.ndarray, progress: bool = False, **params) -> Backend:
    """The backend called ``name`` (``auto`` picks by row count) built over ``vectors``."""
    name = resolve_name(name, len(vectors))
    if name == "exact":
        return ExactBackend(vectors)
    from binder import faiss_backends

    return faiss_backends.build(name, vectors, progress=progress, **params)


def resolve_name(name: str, rows: int) -> str:
    """``auto`` → ``exact`` up to AUTO_EXACT_MAX_ROWS rows, else AUTO_APPROX; others validated."""
    if name not in BACKENDS:
        raise BackendError(f"unknown search backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "exact" if rows <= AUTO_EXACT_MAX_ROWS else AUTO_APPROX
    return name


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-k ids (Q, k) found in ``found`` (Q, k'), padding (-1) ignored."""
    hits = total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t))
        total += len(t)
    return hits / total if total else 1.0


def default_threads() -> int:
    """Threads for faiss: OMP_NUM_THREADS when set, else the CPU count."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """A stderr progress bar for index builds (silent unless ``enabled``)."""
    return tqdm(total=total, desc=desc, unit="row", disable=not enabled, dynamic_ncols=True)


def ivf_lists(rows: int) -> int:
    """IVF cell count: about 4·sqrt(N), and at least 39 training rows per cell."""
    return max(1, min(int(4 * math.sqrt(rows)), rows // 39))
