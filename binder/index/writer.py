"""The single writer of an index folder: shards, tombstones and atomic manifest commits.

Every change follows the same order, so a crash at any point leaves the last committed state:
write the new shard files (temp + fsync + rename), then replace ``manifest.json`` (temp + fsync +
rename + directory fsync), then delete the files of shards the new manifest no longer lists.
Two writers never interleave: the writer holds an exclusive ``flock`` on ``INDEX_DIR/.lock``.

A writer checks what it opens like a reader does (``binder.index.integrity``: manifest schema and
every shard's files), so it never builds on a damaged index; each committed shard entry records
its files' byte sizes and blake2b hashes (``write_shard``). Files are only ever deleted by plain
name inside the index folder, whatever a damaged manifest says.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import MANIFEST, write_shard
from binder.errors import IndexStoreError
from binder.index.integrity import duplicate_paths, load_checked_shard, raise_first, vector_damage
from binder.index.store import INDEX_FORMAT, INDEX_VERSION, live_count, parent_folders, read_index_manifest
from binder.io import atomic_write_bytes, fsync_dir, is_temp_name

LOCK = ".lock"
# Shards the plain writer numbers itself; anything else (e.g. Ray's content-named shards) is kept
# when unlisted, so an interrupted distributed job can pick its finished shards up again.
_NUMBERED = re.compile(r"^(embeddings|metadata)-(\d{6})\.(npy|jsonl)$")


@dataclass(frozen=True)
class RowRef:
    """Where a live row of the index is, and the file state it was embedded from."""

    shard: str
    row: int
    size: int
    mtime_ns: int
    hash: str


def new_manifest(dim: int, model: str | None) -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "generation": 0, "dim": int(dim),
            "model": model, "count": 0, "next_shard": 0, "shards": []}


class IndexWriter:
    """Holds the index lock; appends rows in shards, tombstones rows, commits manifests.

    Use as a context manager. ``append`` commits a shard every ``shard_size`` rows and returns the
    metadata of the rows that commit made durable (only those may be reported as done).
    """

    def __init__(self, folder: str | os.PathLike, dim: int | None = None, model: str | None = None,
                 create: bool = True, shard_size: int = 1024, wait: float = 0.0,
                 load: Callable[[Path], tuple[dict[str, Any], set[str]]] | None = None):
        """``load`` (repair) reads the state to start from under the lock instead of the manifest:
        (the manifest to write next, the file names the manifest on disk lists)."""
        self.folder = Path(folder)
        self.shard_size = max(1, int(shard_size))
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        elif not (self.folder / MANIFEST).exists():
            read_index_manifest(self.folder)  # raises the "not an index" error
        self._lock_fd: int | None = _acquire_lock(self.folder, wait)
        try:
            if load is not None:
                self.manifest, self._committed = load(self.folder)
            elif (self.folder / MANIFEST).exists():
                self.manifest = read_index_manifest(self.folder)
                self._committed = _files(self.manifest)
            elif dim is None:
                raise IndexStoreError(f"{self.folder}: not an anybind index and no model dim to create one")
            else:
                self.manifest = new_manifest(dim, model)
                self._committed = set()
            self._clean_stale()
            self.live = self._load_live()
        except BaseException:
            self.close()
            raise
        self._rows: list[np.ndarray] = []
        self._meta: list[dict[str, Any]] = []

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading the current state -------------------------------------------------------------

    def _load_live(self) -> dict[str, RowRef]:
        """Every live row by path, from shards checked as a reader checks them (one at a time)."""
        dim = int(self.manifest["dim"])
        shards = [(pos, e, load_checked_shard(self.folder, e, dim)[1]) for pos, e in enumerate(self.manifest["shards"])]
        raise_first(duplicate_paths(self.folder, shards))
        live: dict[str, RowRef] = {}
        for _, entry, meta in shards:
            dead = set(entry["dead"])
            for i, m in enumerate(meta):
                if i not in dead:
                    live[m["path"]] = RowRef(entry["id"], i, m["size"], m["mtime_ns"], m["hash"])
        return live

    # -- changing it ---------------------------------------------------------------------------

    def append(self, embeddings: np.ndarray, metadata: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Buffer rows; commit full shards. Returns the rows committed by this call."""
        if embeddings.shape != (len(metadata), self.manifest["dim"]):
            raise IndexStoreError(f"{self.folder}: embeddings {embeddings.shape} do not fit "
                                  f"{len(metadata)} rows of dim {self.manifest['dim']}")
        rows = np.asarray(embeddings, dtype=np.float32)
        bad = vector_damage(rows, len(metadata), self.manifest["dim"])
        if bad:  # never write a shard that every reader would then refuse
            raise IndexStoreError(f"{self.folder}: refusing to write embeddings: {'; '.join(bad)}")
        self._rows.append(rows)
        self._meta.extend(metadata)
        done: list[dict[str, Any]] = []
        while len(self._meta) >= self.shard_size:
            done += self._flush_some(self.shard_size)
        return done

    def flush(self) -> list[dict[str, Any]]:
        """Commit whatever rows are buffered as one (smaller) shard."""
        return self._flush_some(len(self._meta)) if self._meta else []

    def _flush_some(self, n: int) -> list[dict[str, Any]]:
        rows = np.concatenate(self._rows)
        meta, self._meta = self._meta[:n], self._meta[n:]
        self._rows = [rows[n:]] if len(self._meta) else []
        shard_id = self.new_shard_id()
        entry = write_shard(self.folder, shard_id, rows[:n], meta)
        self.add_shard(shard_id, entry, meta)
        return meta

    def add_shard(self, shard_id: str, entry: dict[str, Any], metadata: list[dict[str, Any]]) -> None:
        """Commit an already-written shard: its rows replace live rows of the same paths."""
        self._tombstone(m["path"] for m in metadata)
        self.manifest["shards"].append({"id": shard_id, **entry, "dead": []})
        for i, m in enumerate(metadata):
            self.live[m["path"]] = RowRef(shard_id, i, m["size"], m["mtime_ns"], m["hash"])
        self.commit()

    def remove(self, paths: Iterable[str]) -> int:
        """Tombstone the live rows of ``paths`` and commit; returns how many rows were removed."""
        removed = self._tombstone(paths)
        if removed:
            self.commit()
        return removed

    def _tombstone(self, paths: Iterable[str]) -> int:
        dead: dict[str, set[int]] = {}
        for path in paths:
            ref = self.live.pop(path, None)
            if ref is not None:
                dead.setdefault(ref.shard, set()).add(ref.row)
        for entry in self.manifest["shards"]:
            if entry["id"] in dead:
                entry["dead"] = sorted(dead[entry["id"]].union(entry["dead"]))
        return sum(map(len, dead.values()))

    def replace_all(self, shards: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]) -> None:
        """Commit a manifest that lists exactly ``shards`` (compaction); old shards are dropped."""
        self.manifest["shards"] = [{"id": sid, **entry, "dead": []} for sid, entry, _ in shards]
        self.live = {m["path"]: RowRef(sid, i, m["size"], m["mtime_ns"], m["hash"])
                     for sid, _, meta in shards for i, m in enumerate(meta)}
        self.commit()

    def add_roots(self, roots: Iterable[str]) -> None:
        """Record ``roots`` (real paths a build was given) in the manifest, committed with the next
        commit. A manifest written before roots were recorded is first given the folders of its
        live rows, so the rows it already holds stay inside its roots."""
        known = self.manifest.get("roots")
        if not isinstance(known, list):
            known = list(parent_folders(self.live))
        self.manifest["roots"] = sorted(set(known).union(roots))

    def new_shard_id(self) -> str:
        shard_id = f"{self.manifest['next_shard']:06d}"
        self.manifest["next_shard"] += 1
        return shard_id

    def commit(self) -> None:
        """Write the manifest atomically (generation + 1), then delete files of dropped shards."""
        self.manifest["shards"] = [e for e in self.manifest["shards"] if len(e["dead"]) < e["rows"]]
        self.manifest["generation"] += 1
        self.manifest["count"] = live_count(self.manifest)
        self.manifest["updated"] = time.time()
        data = json.dumps(self.manifest, indent=1).encode()
        fsync_dir(self.folder)  # the shard renames are durable before the manifest names them
        atomic_write_bytes(self.folder / MANIFEST, data)
        fsync_dir(self.folder)
        kept = _files(self.manifest)
        for name in self._committed - kept:
            if _plain_name(name):  # never follow a damaged manifest's name out of the folder
                _unlink(self.folder / name)
        self._committed = kept

    def close(self) -> None:
        """Release the lock (buffered rows that were never flushed are dropped)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- housekeeping --------------------------------------------------------------------------

    def _clean_stale(self) -> None:
        """Remove temp files of interrupted writes and numbered shards no manifest ever committed
        (files the manifest on disk lists stay until a commit drops them, even in a repair)."""
        listed = _files(self.manifest) | self._committed
        for path in self.folder.iterdir():
            name = path.name
            if is_temp_name(name) or (_NUMBERED.match(name) and name not in listed):
                _unlink(path)

    def unlisted_files(self) -> list[Path]:
        """Shard files in the folder that the manifest does not list (e.g. unused Ray shards)."""
        listed = _files(self.manifest)
        pattern = re.compile(r"^(embeddings-.+\.npy|metadata-.+\.jsonl|failures-.+\.json)$")
        return [p for p in self.folder.iterdir() if pattern.match(p.name) and p.name not in listed]


def _files(manifest: dict[str, Any]) -> set[str]:
    return {name for e in manifest["shards"] for name in (e["embeddings"], e["metadata"])}


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and os.path.basename(name) == name and "\\" not in name


def _acquire_lock(folder: Path, wait: float) -> int:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise IndexStoreError(f"{folder}: another process is writing this index "
                                      f"(it holds {folder / LOCK}); try again when it is done") from None
            time.sleep(0.1)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
