"""``ServeState``: what every route shares: the model (behind its batcher), the index, uploads.

The index is a snapshot of an index folder. Every look-up (``view``, ``index``, ``item``) first
compares ``manifest.json``'s inode, mtime and size with those of the snapshot being served: one
``stat``, no read. A writer (``anybind index add``) replaces the manifest by a rename on each
commit, so a new generation shows as a changed stat and is loaded then (only its new shards are
read; ``IndexStore`` keeps the old ones), without a restart. A new generation that cannot be
loaded (damaged, another dimension) is reported once and the previous one keeps being served.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from starlette.concurrency import run_in_threadpool

from binder.embed.shards import MANIFEST
from binder.embed.workers import single_threaded_worker
from binder.errors import AnybindError, IndexStoreError
from binder.index.backends import resolve_name
from binder.index.search import EmbeddingIndex
from binder.index.store import IndexStore
from binder.serve.batching import Batcher
from binder.serve.config import ServeConfig
from binder.serve.errors import ItemNotFoundError, one_line
from binder.serve.metrics import Metrics
from binder.serve.uploads import UploadDir

log = logging.getLogger("anybind.serve")
TOKEN_COOKIE = "anybind_token"  # a browser page may hold the token here; API clients send the header


class LruCache:
    """A small thread-safe least-recently-used map (label vectors of recent classifications)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class IndexView:
    """One generation of the index: ``index`` holds its rows (``index.metadata``) and vectors."""

    index: EmbeddingIndex
    generation: int
    paths: frozenset[str]  # the files its rows hold: the only files a query may name


class ServeState:
    """The served model, its batcher and decode threads, the index (reloaded on change), uploads."""

    def __init__(self, config: ServeConfig, model: Any, model_name: str):
        self.config = config
        self.token = config.token
        self.model = model
        self.model_name = model_name
        self.metrics = Metrics()
        self.store = IndexStore.open(config.index)
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = self._manifest_key()
        self._view = self._load()
        threads = config.threads or max(1, torch.get_num_threads() - 1)  # read before decode threads start
        self.decoder = ThreadPoolExecutor(config.decode_workers, initializer=single_threaded_worker,
                                          thread_name_prefix="anybind-serve-decode")
        self.batcher = Batcher(model, window_s=config.batch_window_ms / 1000, max_batch=config.batch_size,
                               metrics=self.metrics, threads=threads)
        self.uploads = UploadDir(config.max_upload_bytes)
        self.cache = LruCache()
        self.metrics.gauges.update({
            "anybind_index_generation": lambda: self._view.generation,
            "anybind_index_rows": lambda: len(self._view.index),
            "anybind_batching_enabled": lambda: float(config.batching),
            "anybind_encode_queue_depth": lambda: self.batcher.depth,
        })

    @property
    def index(self) -> EmbeddingIndex:
        """The current snapshot's index (rows in ``index.metadata``), reloaded if a writer committed."""
        return self.view().index

    @property
    def generation(self) -> int:
        return self.view().generation

    def view(self) -> IndexView:
        """The current generation, loading a new one when the manifest changed since the last look."""
        key = self._manifest_key()
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._key = key
                    self._reload()
        return self._view

    async def current(self) -> IndexView:
        """``view`` for async routes: a reload runs on a worker thread, never on the event loop."""
        if self._manifest_key() != self._key:
            return await run_in_threadpool(self.view)
        return self._view

    def item(self, item_id: int) -> tuple[Path, dict[str, Any]]:
        """(file, metadata row) of row ``item_id`` of the current snapshot; ItemNotFoundError if none.

        Only rows of the index are ever served, so no client-given path is ever opened.
        """
        index = self.index
        if not 0 <= item_id < len(index):
            raise ItemNotFoundError(f"no item {item_id}: the index (generation {self._view.generation}) holds "
                                    f"items 0 to {len(index) - 1}" if len(index) else
                                    f"no item {item_id}: the index is empty")
        row = index.metadata[item_id]
        path = Path(row["path"])
        if not path.is_file():
            raise ItemNotFoundError(f"item {item_id} ({path.name}): its file is no longer there")
        return path, row

    def close(self) -> None:
        """Stop the encode worker and decode threads and remove the upload folder."""
        self.batcher.close()
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.uploads.close()

    def _manifest_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.config.index / MANIFEST)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        try:
            self._view = self._load()
        except (AnybindError, OSError, ValueError) as exc:
            log.warning("anybind serve: keeping index generation %d: %s", self._view.generation, one_line(str(exc)))
            return
        self.metrics.reloaded()

    def _load(self) -> IndexView:
        snap = self.store.snapshot()
        if snap.dim != self.model.embed_dim:
            raise IndexStoreError(f"{self.config.index}: holds {snap.dim}-d vectors but the model embeds into "
                                  f"{self.model.embed_dim} dimensions")
        name = resolve_name(self.config.backend, len(snap.vectors)) if len(snap.vectors) else "exact"
        if name != "exact":
            from binder.index.ann_cache import cached_backend

            backend: Any = cached_backend(self.config.index, snap, name)
        else:
            backend = "exact"
        paths = frozenset(str(r.get("path", "")) for r in snap.rows)
        return IndexView(EmbeddingIndex(snap.vectors, snap.rows, backend, model=snap.model), snap.generation, paths)
