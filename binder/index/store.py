"""A persistent cross-modal index on disk, and consistent snapshots of it for readers.

Layout of an index folder::

    manifest.json                 the one source of truth, replaced atomically on every commit
    embeddings-<id>.npy           (rows, dim) float32 unit vectors of one shard (immutable)
    metadata-<id>.jsonl           one JSON object per row of that shard (immutable)
    .lock                         held (flock) by the single writer; readers never take it

The manifest lists the committed shards, each with the rows removed from it since (``dead``:
tombstones), the model the index was built with, its embedding dim, the real paths of the folders
and files the builds were given (``roots``, optional: older indexes have none, see ``index_roots``),
and a ``generation`` that grows by one on every commit. Shard files never change once written, so a
reader that reads the manifest once and then loads the shards it lists sees one consistent state. A
shard that a later commit drops (all its rows removed, or compaction) is deleted after that commit;
a reader that raced with the deletion reads the manifest again (``snapshot`` retries, and says a writer is
compacting only when the new manifest it read is really a newer generation; a file missing from
the generation that lists it is damage).

Nothing damaged is read as whole: the manifest and every shard are checked as they are loaded
(``binder.index.integrity``), and damage is an ``IndexDamageError`` naming the file.

Writing lives in ``binder.index.writer``; building and updating in ``binder.index.build``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import MANIFEST
from binder.errors import IndexFileMissingError, IndexStoreError
from binder.index.integrity import (
    INDEX_FORMAT,
    INDEX_VERSION,
    check_index_manifest,
    duplicate_paths,
    load_checked_shard,
    load_manifest_json,
    raise_first,
)

__all__ = ["INDEX_FORMAT", "INDEX_VERSION", "IndexStore", "Snapshot", "index_roots", "live_count",
           "read_index_manifest"]
SNAPSHOT_RETRIES = 5


@dataclass(frozen=True)
class Snapshot:
    """One committed state of an index: live rows only, row-aligned with their metadata.

    ``vectors`` is the snapshot's own copy (the store's shard cache is never exposed).
    """

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    model: str | None
    generation: int
    dim: int
    manifest: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)


def read_index_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked index manifest of ``folder``: IndexStoreError naming the folder if it is not an
    index, IndexDamageError naming ``manifest.json`` if it is a damaged one."""
    folder = Path(folder)
    try:
        manifest = load_manifest_json(folder)
    except FileNotFoundError:
        raise IndexStoreError(f"{folder}: not an anybind index (no {MANIFEST}); "
                              f"create one with `anybind index build {folder} PATH...`") from None
    except OSError as exc:
        raise IndexStoreError(f"{folder}: unreadable index manifest ({exc.strerror or exc})") from None
    return check_index_manifest(folder, manifest)


def index_roots(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The real paths of the folders (or files) the index was built from: the manifest's ``roots``
    (written by every build since they are recorded); for an older index that has none, the real
    paths of the folders holding its rows. A reader that hands files out serves only files inside them."""
    roots = manifest.get("roots")
    if isinstance(roots, list) and roots and all(isinstance(r, str) and os.path.isabs(r) for r in roots):
        return tuple(roots)
    return parent_folders(str(r.get("path", "")) for r in rows)


def parent_folders(paths: Iterable[str]) -> tuple[str, ...]:
    """The real paths of the folders holding ``paths`` (sorted, each once)."""
    return tuple(sorted({os.path.realpath(folder) for folder in {os.path.dirname(p) for p in paths} if folder}))


def live_count(manifest: dict[str, Any]) -> int:
    """Rows a snapshot of ``manifest`` holds (shard rows minus tombstones)."""
    return sum(s["rows"] - len(s["dead"]) for s in manifest["shards"])


class IndexStore:
    """Read access to an index folder. Cheap to open; ``snapshot`` reloads only new shards."""

    def __init__(self, folder: str | os.PathLike, manifest: dict[str, Any]):
        self.folder = Path(folder)
        self._manifest = manifest
        self._cache: dict[tuple, tuple[np.ndarray, list[dict[str, Any]]]] = {}

    @classmethod
    def open(cls, folder: str | os.PathLike) -> IndexStore:
        """Open an existing index; raises IndexStoreError naming ``folder`` if it is not one."""
        return cls(folder, read_index_manifest(folder))

    @property
    def model(self) -> str | None:
        return self._manifest.get("model")

    @property
    def dim(self) -> int:
        return int(self._manifest["dim"])

    def change_key(self) -> tuple[int, int, int] | None:
        """A token that changes whenever a writer commits (the manifest's inode, mtime and size: one
        ``stat``, no read), None while there is no manifest to stat."""
        try:
            st = os.stat(self.folder / MANIFEST)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def manifest(self) -> dict[str, Any]:
        """The manifest as committed now (read again from disk)."""
        self._manifest = read_index_manifest(self.folder)
        return self._manifest

    def snapshot(self) -> Snapshot:
        """A consistent view: the manifest is read once and only the shards it lists are loaded.

        A shard file missing is a race with a writer only if the manifest has moved on since: then
        the new one is read and tried. If it has not, the file is gone for good (damage).
        """
        manifest = self.manifest()
        for _ in range(SNAPSHOT_RETRIES):
            try:
                return self._snapshot_of(manifest)
            except IndexFileMissingError:
                newer = self.manifest()
                if newer["generation"] == manifest["generation"]:
                    raise
                manifest = newer
        raise IndexStoreError(f"{self.folder}: shards kept disappearing while reading; is a writer compacting?")

    def _snapshot_of(self, manifest: dict[str, Any]) -> Snapshot:
        dim = int(manifest["dim"])
        blocks: list[np.ndarray] = []
        rows: list[dict[str, Any]] = []
        shards = [(pos, entry, self._shard(entry, dim)) for pos, entry in enumerate(manifest["shards"])]
        raise_first(duplicate_paths(self.folder, ((p, e, meta) for p, e, (_, meta) in shards)))
        for _, entry, (emb, meta) in shards:
            dead = set(entry["dead"])
            keep = [i for i in range(len(meta)) if i not in dead]
            blocks.append(emb[keep] if dead else emb)
            rows.extend(dict(meta[i], shard=entry["id"], row=i) for i in keep)
        self._cache = {key: self._cache[key] for key in map(_cache_key, manifest["shards"])}
        vectors = np.ascontiguousarray(np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32))
        return Snapshot(vectors, rows, manifest.get("model"), int(manifest["generation"]), dim, manifest)

    def _shard(self, entry: dict[str, Any], dim: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        key = _cache_key(entry)
        if key not in self._cache:
            self._cache[key] = load_checked_shard(self.folder, entry, dim)
        return self._cache[key]


def _cache_key(entry: dict[str, Any]) -> tuple:
    """What identifies a shard's files: names, rows and recorded sizes/hashes (not its tombstones)."""
    return (entry["embeddings"], entry["metadata"], entry["rows"],
            tuple(sorted(entry.get("bytes", {}).items())), tuple(sorted(entry.get("hash", {}).items())))
