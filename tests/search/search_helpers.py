"""Helpers of the search tests: random and clustered unit vectors and a numpy brute-force reference.

A module of its own (not conftest.py): test modules import from it, and ``conftest`` is a name
every test folder's fixtures file shares.
"""
from __future__ import annotations

import numpy as np


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, d: int, centers: int = 40) -> np.ndarray:
    """Unit vectors around a few centres: the structure real embeddings have and ANN indexes rely on."""
    c = unit(rng, centers, d)
    x = c[rng.integers(0, centers, n)] + rng.standard_normal((n, d)).astype(np.float32) * (0.6 / np.sqrt(d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Reference top-k: full score matrix, masked, sorted by (-score, row id); rows past the allowed count dropped."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ vectors.astype(np.float64).T
    keep = np.ones(len(vectors), bool) if allowed is None else allowed
    out = []
    for row in scores:
        ids = np.flatnonzero(keep)
        order = ids[np.lexsort((ids, -row[ids]))][:k]
        out.append((row[order], order))
    return out
