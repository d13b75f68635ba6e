"""What every nearest-neighbour backend shares: the ``Backend`` interface, ``Results`` and helpers.

Vectors are unit rows, so inner product = cosine similarity. Every backend answers the same call,
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
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from binder.errors import AnybindError

# A filtered faiss search falls back to exact search over the allowed rows when they are this few.
SUBSET_EXACT_MAX_ROWS = 50_000


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


def empty_results(q: int, k: int) -> Results:
    return Results(np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64))


def order_ties(res: Results) -> None:
    """Within equal scores, lower row id first (so results are deterministic); padding last."""
    ids = np.where(res.ids < 0, np.iinfo(np.int64).max, res.ids)
    for r in range(len(ids)):
        order = np.lexsort((ids[r], -res.scores[r]))
        res.scores[r], res.ids[r] = res.scores[r][order], res.ids[r][order]


class Backend(ABC):
    """A search structure over a fixed (N, D) matrix of unit rows."""

    name: ClassVar[str]

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors if is_ready(vectors) else np.ascontiguousarray(vectors, dtype=np.float32)

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


def is_ready(x: np.ndarray) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 2


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
