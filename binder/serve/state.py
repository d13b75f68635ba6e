"""``ServeState``: what every route shares: the model (behind its batcher), the index, uploads.

The index is a ``binder.index.live.LiveIndex``: every look-up (``view``, ``index``, ``item``) costs
one ``stat`` until a writer (``anybind index add``) commits; then the new generation is read (only
its new shards) and served without a restart. A new generation that cannot be read (damaged,
another dimension) is logged once and the previous one keeps being served.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from starlette.concurrency import run_in_threadpool

from binder.embed.workers import single_threaded_worker
from binder.index.live import IndexGeneration, LiveIndex
from binder.index.search import EmbeddingIndex
from binder.serve.batching import Batcher
from binder.serve.config import ServeConfig
from binder.serve.errors import ItemNotFoundError, one_line
from binder.serve.items import served_file
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


IndexView = IndexGeneration  # one generation of the index, as routes see it


class ServeState:
    """The served model, its batcher and decode threads, the index (reloaded on change), uploads."""

    def __init__(self, config: ServeConfig, model: Any, model_name: str):
        self.config = config
        self.token = config.token
        self.model = model
        self.model_name = model_name
        self.metrics = Metrics()
        self.live = LiveIndex(config.index, config.backend, model.embed_dim, self._stale,
                              lambda _: self.metrics.reloaded())
        threads = config.threads or max(1, torch.get_num_threads() - 1)  # read before decode threads start
        self.decoder = ThreadPoolExecutor(config.decode_workers, initializer=single_threaded_worker,
                                          thread_name_prefix="anybind-serve-decode")
        self.batcher = Batcher(model, window_s=config.batch_window_ms / 1000, max_batch=config.batch_size,
                               metrics=self.metrics, threads=threads)
        self.uploads = UploadDir(config.max_upload_bytes)
        self.cache = LruCache()
        self.metrics.gauge("anybind_index_generation", lambda: self.live.current().generation)
        self.metrics.gauge("anybind_index_rows", lambda: len(self.live.current().index))
        self.metrics.gauge("anybind_batching_enabled", lambda: float(config.batching))
        self.metrics.gauge("anybind_encode_queue_depth", lambda: self.batcher.depth)

    @property
    def index(self) -> EmbeddingIndex:
        """The current snapshot's index (rows in ``index.metadata``), reloaded if a writer committed."""
        return self.view().index

    @property
    def generation(self) -> int:
        return self.view().generation

    def view(self) -> IndexView:
        """The current generation, loading a new one when a writer committed since the last look."""
        return self.live.current()

    async def current(self) -> IndexView:
        """``view`` for async routes: a reload runs on a worker thread, never on the event loop."""
        if self.live.changed():
            return await run_in_threadpool(self.view)
        return self.live.current()

    def item(self, item_id: int) -> tuple[Path, dict[str, Any]]:
        """(real path of the file, metadata row) of row ``item_id`` of the current snapshot.

        Only rows of the index are ever served, so no client-given path is ever opened, and a row's
        file only while it is inside the index's roots and is still what was indexed
        (``binder.serve.items.served_file``): ItemNotFoundError (404) or ItemChangedError (409) else.
        """
        return self.item_file(item_id)[:2]

    def item_file(self, item_id: int) -> tuple[Path, dict[str, Any], os.stat_result]:
        """``item`` and the stat of the file as checked (``open_checked`` compares it with the open file)."""
        view = self.view()
        index = view.index
        if not 0 <= item_id < len(index):
            raise ItemNotFoundError(f"no item {item_id}: the index (generation {view.generation}) holds "
                                    f"items 0 to {len(index) - 1}" if len(index) else
                                    f"no item {item_id}: the index is empty")
        row = index.metadata[item_id]
        path, st = served_file(row, view.roots, item_id)
        return path, row, st

    def close(self) -> None:
        """Stop the encode worker and decode threads and remove the upload folder."""
        self.batcher.close()
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.uploads.close()

    def _stale(self, kept: int, exc: Exception) -> None:
        log.warning("anybind serve: keeping index generation %d: %s", kept, one_line(str(exc)))
