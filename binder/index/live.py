"""An index that follows its writer: one snapshot at a time, swapped for the next when a writer commits.

A long-running reader (the server) asks ``current()`` per request: one ``stat`` tells whether a
writer committed since the last look, and only then is the new generation read (only its new
shards) and its ANN cache used or built. A new generation that cannot be read is reported and the
last good one kept, so a damaged commit never turns a working reader into a broken one.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from binder.errors import AnybindError, IndexStoreError
from binder.index.search import EmbeddingIndex
from binder.index.store import IndexStore, index_roots


@dataclass(frozen=True)
class IndexGeneration:
    """One committed generation: its searchable ``index`` (rows in ``index.metadata``) and the files it holds."""

    index: EmbeddingIndex
    generation: int
    paths: frozenset[str]  # the files its rows name: the only files a reader may open on a row's behalf
    roots: tuple[str, ...] = ()  # real paths the index was built from (``index_roots``): files served must be inside


class LiveIndex:
    """An index folder opened for reading while writers may commit (``IndexStore`` + ``EmbeddingIndex``)."""

    def __init__(self, folder: str | os.PathLike, backend: str = "exact", dim: int | None = None,
                 on_stale: Callable[[int, Exception], None] | None = None,
                 on_new: Callable[[IndexGeneration], None] | None = None):
        """``dim``: the dimension a reader's model embeds into (a mismatch is an IndexStoreError);
        ``on_stale(kept_generation, error)`` hears a new generation that could not be read, ``on_new``
        one that was read after the first."""
        self.folder = Path(folder)
        self.backend = backend
        self.dim = dim
        self.on_stale = on_stale
        self.on_new = on_new
        self.store = IndexStore.open(folder)
        self._lock = threading.Lock()
        self._key = self.store.change_key()
        self._current = self._read()

    @property
    def model(self) -> str | None:
        """The model the index records (None: the untrained default)."""
        return self.store.model

    def changed(self) -> bool:
        """Whether a writer committed since the generation held now was read (one ``stat``)."""
        return self.store.change_key() != self._key

    def current(self) -> IndexGeneration:
        """The newest readable generation, reading it first when a writer committed since the last look."""
        key = self.store.change_key()
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._key = key
                    self._refresh()
        return self._current

    def _refresh(self) -> None:
        try:
            self._current = self._read()
        except (AnybindError, OSError, ValueError) as exc:
            if self.on_stale is not None:
                self.on_stale(self._current.generation, exc)
            return
        if self.on_new is not None:
            self.on_new(self._current)

    def _read(self) -> IndexGeneration:
        snap = self.store.snapshot()
        if self.dim is not None and snap.dim != self.dim:
            raise IndexStoreError(f"{self.folder}: holds {snap.dim}-d vectors but the model embeds into "
                                  f"{self.dim} dimensions")
        index = EmbeddingIndex.from_snapshot(self.folder, snap, self.backend)
        return IndexGeneration(index, snap.generation, frozenset(str(r.get("path", "")) for r in snap.rows),
                               index_roots(snap.manifest, snap.rows))
