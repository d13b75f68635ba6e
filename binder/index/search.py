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
from typing import TYPE_CHECKING, Any

import numpy as np

from binder.embed.shards import MANIFEST, read_shards
from binder.errors import IndexStoreError
from binder.index.backends import Backend, make_backend, resolve_name
from binder.index.mix import ModalityStats, check_mix, interleave_order, modality_stats, rank_scores
from binder.model_choice import UNTRAINED

if TYPE_CHECKING:
    from binder.index.store import Snapshot

MAX_EMBED_MANIFEST = 64 << 20


@dataclass(frozen=True)
class Hit:
    """One result: its cosine ``score``, its ``row`` and metadata, and ``rank_score``, what a mix
    of modalities ranked it by (``binder.index.mix``; the cosine itself for a raw ranking)."""

    score: float
    row: int
    meta: dict[str, Any]
    rank_score: float | None = None


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
        self._stats: dict[str, ModalityStats] | None = None
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
            emb, meta, model = _read_embed_folder(folder)
            return cls(emb, meta, backend, model=None if model == UNTRAINED else model,
                       progress=progress, **params)
        from binder.index.store import IndexStore

        return cls.from_snapshot(folder, IndexStore.open(folder).snapshot(), backend, cache, progress, **params)

    @classmethod
    def from_snapshot(cls, folder: str | os.PathLike, snap: Snapshot, backend: str = "exact", cache: bool = True,
                      progress: bool = False, **params) -> EmbeddingIndex:
        """The index over one snapshot of the index folder ``folder`` (see ``open`` for ``cache``)."""
        name = resolve_name(backend, len(snap.vectors)) if len(snap.vectors) else "exact"
        if name != "exact" and cache:
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

    def search(self, query: np.ndarray, k: int = 10, modality: str | None = None, mix: str = "raw") -> list[Hit]:
        """The ``k`` rows most similar (cosine) to ``query``, optionally of one modality only; over
        several modalities ranked by ``mix`` (``binder.index.mix``)."""
        return self.search_many(np.asarray(query, dtype=np.float32).reshape(1, -1), k, modality, mix)[0]

    def search_many(self, queries: np.ndarray, k: int = 10, modality: str | None = None,
                    mix: str = "raw") -> list[list[Hit]]:
        """``search`` for a batch of query vectors (Q, D)."""
        check_mix(mix)
        allowed = None
        if modality is not None:
            from binder.registry import get_modality

            get_modality(modality)  # unknown names are a typed error, not an empty result
            allowed = self._modality == modality
        elif mix != "raw" and len(self.modalities()) > 1:
            return self._mixed(queries, k, mix)
        res = self.backend.search(queries, k, allowed)
        return [[Hit(float(s), int(i), self.metadata[i], float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(res.scores, res.ids)]

    def stats(self) -> dict[str, ModalityStats]:
        """Each modality's mean and covariance (computed once, on first use)."""
        if self._stats is None:
            self._stats = modality_stats(self.embeddings, self._modality)
        return self._stats

    def _mixed(self, queries: np.ndarray, k: int, mix: str) -> list[list[Hit]]:
        """The best ``k`` of every modality, merged by ``mix``."""
        stats = self.stats()
        names = self.modalities()
        found = [self.backend.search(queries, k, self._modality == name) for name in names]
        out = []
        for q, query in enumerate(np.asarray(queries, dtype=np.float32)):
            lists = []
            for name, res in zip(names, found):
                keep = res.ids[q] >= 0
                ids, scores = res.ids[q][keep], res.scores[q][keep].astype(np.float64)
                ranked = rank_scores(mix, scores, query, stats[name]) if mix != "interleave" else scores
                lists.append([Hit(float(s), int(i), self.metadata[i], float(r))
                              for s, i, r in zip(scores, ids, ranked)])
            if mix == "interleave":
                hits = [lists[m][r] for m, r in interleave_order([[h.score for h in hl] for hl in lists])]
            else:
                hits = sorted((h for hl in lists for h in hl), key=lambda h: -(h.rank_score or 0.0))
            out.append(hits[:k])
        return out


def _is_shard_folder(folder: str | os.PathLike) -> bool:
    """True for ``anybind embed`` output: a manifest listing shards and nothing of an index's
    (a damaged index manifest that lost its format tag is still read, and refused, as an index)."""
    from binder.index.integrity import is_index_like

    try:
        if (Path(folder) / MANIFEST).stat().st_size > MAX_EMBED_MANIFEST:
            return False
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and "shards" in manifest and not is_index_like(manifest)


def _read_embed_folder(folder: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]], str | None]:
    """An ``anybind embed`` folder's rows, metadata and model; damage is an IndexStoreError."""
    try:
        emb, meta = read_shards(folder)
        model = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise IndexStoreError(f"{folder}: damaged embedding folder ({type(exc).__name__}: {exc})") from None
    if emb.dtype != np.float32 or emb.ndim != 2 or not np.isfinite(emb).all():
        raise IndexStoreError(f"{folder}: damaged embedding folder (vectors {emb.dtype} {emb.shape}, "
                              f"or not all finite)")
    return emb, meta, model if isinstance(model, str) else None
