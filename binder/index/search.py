"""Cross-modal search over a set of embeddings: rows + metadata + a search backend.

``EmbeddingIndex`` opens either an index folder (``anybind index build``, read through
``IndexStore`` snapshots) or a plain shard folder (``anybind embed --out``), and answers
``search(query, k, modality)`` with ``Hit`` objects, best first. The backend (exact by default,
faiss ones optional; see ``binder.index.backends.base``) does the nearest-neighbour work, and the modality
filter is applied inside it, so ``k`` hits of that modality come back whenever ``k`` exist.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import MANIFEST, read_shards
from binder.index.backends import Backend, make_backend, resolve_name


@dataclass(frozen=True)
class Hit:
    score: float
    row: int
    meta: dict[str, Any]


class EmbeddingIndex:
    """All rows in memory plus a search backend built over them (exact unless asked otherwise)."""

    def __init__(self, embeddings: np.ndarray, metadata: list[dict[str, Any]], backend: str | Backend = "exact",
                 model: str | None = None, progress: bool = False, **params):
        if len(embeddings) != len(metadata):
            raise ValueError(f"{len(embeddings)} embeddings but {len(metadata)} metadata rows")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.metadata = metadata
        self.model = model
        self._modality = np.asarray([m.get("modality", "") for m in metadata], dtype=object)
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = make_backend(backend, self.embeddings, progress=progress, **params)

    @classmethod
    def open(cls, folder: str | os.PathLike, backend: str = "exact", cache: bool = True, progress: bool = False,
             **params) -> EmbeddingIndex:
        """An index folder (its current snapshot) or an ``anybind embed`` shard folder.

        With ``cache``, an approximate backend built for an index folder is kept in
        ``FOLDER/ann/`` keyed by the snapshot generation and reused while the index is unchanged.
        """
        if _is_shard_folder(folder):
            emb, meta = read_shards(folder)
            model = json.loads((Path(folder) / MANIFEST).read_text()).get("model")
            return cls(emb, meta, backend, model=None if model == "untrained-default" else model,
                       progress=progress, **params)
        from binder.index.store import IndexStore

        snap = IndexStore.open(folder).snapshot()
        name = resolve_name(backend, len(snap.vectors))
        if name != "exact" and cache and len(snap.vectors):
            from binder.index.ann_cache import cached_backend

            built = cached_backend(folder, snap, name, progress=progress, **params)
            return cls(snap.vectors, snap.rows, built, model=snap.model)
        return cls(snap.vectors, snap.rows, name, model=snap.model, progress=progress, **params)

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def modalities(self) -> list[str]:
        """The modalities present in the index, sorted."""
        return sorted(set(self._modality.tolist()))

    def search(self, query: np.ndarray, k: int = 10, modality: str | None = None) -> list[Hit]:
        """The ``k`` rows most similar (cosine) to ``query``, optionally of one modality only."""
        return self.search_many(np.asarray(query, dtype=np.float32).reshape(1, -1), k, modality)[0]

    def search_many(self, queries: np.ndarray, k: int = 10, modality: str | None = None) -> list[list[Hit]]:
        """``search`` for a batch of query vectors (Q, D) in one backend call."""
        allowed = None
        if modality is not None:
            from binder.registry import get_modality

            get_modality(modality)  # unknown names are a typed error, not an empty result
            allowed = self._modality == modality
        res = self.backend.search(queries, k, allowed)
        return [[Hit(float(s), int(i), self.metadata[i]) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(res.scores, res.ids)]


def _is_shard_folder(folder: str | os.PathLike) -> bool:
    """True for ``anybind embed`` output: a manifest listing shards without the index format tag."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "shards" in manifest and "format" not in manifest
