"""Exact cross-modal search over embedding shards (the store written by ``anybind embed``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from binder.shards import read_shards


@dataclass(frozen=True)
class Hit:
    score: float
    row: int
    meta: dict[str, Any]


class EmbeddingIndex:
    """All rows of a shard folder in memory; search is one matrix product (exact)."""

    def __init__(self, embeddings: np.ndarray, metadata: list[dict[str, Any]]):
        if len(embeddings) != len(metadata):
            raise ValueError(f"{len(embeddings)} embeddings but {len(metadata)} metadata rows")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.metadata = metadata
        self._modality = np.asarray([m.get("modality", "") for m in metadata])

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "EmbeddingIndex":
        return cls(*read_shards(folder))

    def __len__(self) -> int:
        return len(self.metadata)

    def search(self, query: np.ndarray, k: int = 10, modality: str | None = None) -> list[Hit]:
        """The ``k`` rows most similar (cosine) to ``query``, optionally of one modality only."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        scores = self.embeddings @ q
        if modality is not None:
            scores = np.where(self._modality == modality, scores, -np.inf)
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(float(scores[i]), int(i), self.metadata[i]) for i in top]
