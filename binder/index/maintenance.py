"""Remove rows from an index and compact it: the writer's jobs that embed nothing.

No model is loaded and torch is never imported, so ``anybind index rm`` and ``anybind index compact``
start fast; ``binder.index.build`` re-exports both next to the build that embeds.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import write_shard
from binder.index.integrity import load_checked_shard
from binder.index.writer import IndexWriter


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def remove_from_index(folder: str | os.PathLike, paths: Iterable[str | os.PathLike] = (),
                      missing: bool = False, wait_lock: float = 0.0) -> int:
    """Remove the rows of ``paths`` (files, or folders: every row under them) and, with
    ``missing``, of every file that no longer exists. Returns the number of rows removed."""
    roots = [os.path.abspath(p) for p in paths]
    with IndexWriter(folder, create=False, wait=wait_lock) as writer:
        gone = [p for p in writer.live if _under(p, roots) or (missing and not os.path.exists(p))]
        return writer.remove(gone)


def compact_index(folder: str | os.PathLike, shard_size: int | None = None, wait_lock: float = 0.0) -> int:
    """Rewrite the live rows into fresh full shards and drop every old shard (and tombstone).

    Readers holding an older manifest retry with the new one. Returns the number of shards.
    """
    with IndexWriter(folder, create=False, wait=wait_lock) as writer:
        size = shard_size or writer.shard_size
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        for entry in writer.manifest["shards"]:
            emb, meta = load_checked_shard(Path(folder), entry, int(writer.manifest["dim"]))
            keep = [i for i in range(len(meta)) if i not in set(entry["dead"])]
            vecs.append(emb[keep])
            metas.extend(meta[i] for i in keep)
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, writer.manifest["dim"]), np.float32)
        shards = []
        for s in range(0, len(metas), size):
            sid = writer.new_shard_id()
            shards.append((sid, write_shard(folder, sid, vectors[s:s + size], metas[s:s + size]), metas[s:s + size]))
        writer.replace_all(shards)
        for path in writer.unlisted_files():
            path.unlink(missing_ok=True)
        return len(shards)
