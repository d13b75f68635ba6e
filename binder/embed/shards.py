"""Row-aligned embedding shards: ``embeddings-NNNNN.npy`` (float32) + ``metadata-NNNNN.jsonl``.

Each shard is written to temp files and renamed into place, data before metadata, and the
``manifest.json`` that lists complete shards is replaced last: a reader that trusts the manifest
never sees a half-written shard. ``write_shard`` returns the shard's manifest entry with each
file's byte size and blake2b content hash, so that readers can tell a damaged shard from a whole one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from binder.io import atomic_write

MANIFEST = "manifest.json"
HASH_CHUNK = 1 << 20


def new_hasher():
    """The content hash of anybind: blake2b with a 20-byte digest (inputs and shard files alike)."""
    return hashlib.blake2b(digest_size=20)


def hash_text(h: Any) -> str:
    """The recorded form of a finished hash: ``blake2b:<hex>``."""
    return "blake2b:" + h.hexdigest()


def bytes_hash(data: bytes) -> str:
    """``blake2b:<hex>`` of ``data``."""
    h = new_hasher()
    h.update(data)
    return hash_text(h)


def file_hash(path: str | os.PathLike) -> str:
    """``blake2b:<hex>`` of the file's bytes, read in 1 MiB chunks."""
    h = new_hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return hash_text(h)


class _CountingWriter:
    """A write-only file wrapper that hashes and counts what passes through it (np.save's target)."""

    def __init__(self, fh):
        self.fh, self.size, self.hasher = fh, 0, new_hasher()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.hasher.update(view)
        self.size += len(view)
        return self.fh.write(view)

    def digest(self) -> str:
        return hash_text(self.hasher)


def shard_names(shard_id: str) -> tuple[str, str]:
    """File names of shard ``shard_id``: (embeddings .npy, metadata .jsonl)."""
    return f"embeddings-{shard_id}.npy", f"metadata-{shard_id}.jsonl"


def write_shard(folder: str | os.PathLike, shard_id: str, embeddings: np.ndarray,
                metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """Write one immutable shard atomically (embeddings first, metadata last) and return its
    manifest entry: file names, ``rows``, and each file's ``bytes`` and ``hash`` (blake2b of the
    bytes written, computed while writing). The metadata file appearing marks the shard complete."""
    folder = Path(folder)
    rows = np.ascontiguousarray(embeddings, dtype=np.float32)
    if rows.ndim != 2 or len(rows) != len(metadata):
        raise ValueError(f"embeddings {rows.shape} do not match {len(metadata)} metadata rows")
    emb_name, meta_name = shard_names(shard_id)
    counted: list[_CountingWriter] = []
    atomic_write(folder / emb_name, lambda fh: np.save(_counting(fh, counted), rows))
    lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in metadata).encode()
    atomic_write(folder / meta_name, lambda fh: fh.write(lines))
    return {"embeddings": emb_name, "metadata": meta_name, "rows": len(metadata),
            "bytes": {"embeddings": counted[-1].size, "metadata": len(lines)},
            "hash": {"embeddings": counted[-1].digest(), "metadata": bytes_hash(lines)}}


def _counting(fh, sink: list[_CountingWriter]) -> _CountingWriter:
    sink.append(_CountingWriter(fh))
    return sink[-1]


def load_shard(folder: str | os.PathLike, entry: dict[str, Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One shard listed in an ``anybind embed`` manifest: (rows, dim) float32 embeddings and its
    metadata dicts. Index folders are read through ``binder.index.integrity``, which checks more."""
    folder = Path(folder)
    emb = np.load(folder / entry["embeddings"], allow_pickle=False)
    with open(folder / entry["metadata"], encoding="utf-8") as fh:
        meta = [json.loads(line) for line in fh if line.strip()]
    if emb.ndim != 2 or len(emb) != len(meta) or len(meta) != entry["rows"]:
        raise ValueError(f"{folder}: shard {entry['embeddings']} has {emb.shape} embeddings, "
                         f"{len(meta)} metadata rows, manifest says {entry['rows']}")
    return emb.astype(np.float32, copy=False), meta


class ShardWriter:
    """Accumulates rows and writes a shard every ``shard_size`` rows and at ``close``."""

    def __init__(self, folder: str | os.PathLike, dim: int, shard_size: int = 65536, info: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim, self.shard_size, self.info = dim, shard_size, dict(info or {})
        self.shards: list[dict[str, Any]] = []
        self._rows: list[np.ndarray] = []
        self._meta: list[dict[str, Any]] = []
        self.count = 0

    def add(self, embeddings: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        if embeddings.shape != (len(metadata), self.dim):
            raise ValueError(f"embeddings {embeddings.shape} do not match {len(metadata)} rows of dim {self.dim}")
        self._rows.append(np.asarray(embeddings, dtype=np.float32))
        self._meta.extend(metadata)
        if len(self._meta) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._meta:
            return
        entry = write_shard(self.folder, f"{len(self.shards):05d}", np.concatenate(self._rows), self._meta)
        self.shards.append(entry)
        self.count += len(self._meta)
        self._rows, self._meta = [], []
        self._write_manifest()

    def _write_manifest(self) -> None:
        write_manifest(self.folder, self.dim, self.shards, self.info)

    def close(self) -> None:
        self.flush()
        if not self.shards:
            self._write_manifest()


def write_manifest(folder: str | os.PathLike, dim: int, shards: list[dict[str, Any]],
                   info: dict | None = None) -> None:
    """Atomically replace the manifest of an embedding folder so that it lists ``shards``."""
    manifest = {"dim": dim, "count": sum(s["rows"] for s in shards), "shards": shards, **(info or {})}
    data = json.dumps(manifest, indent=2).encode()
    atomic_write(Path(folder) / MANIFEST, lambda fh: fh.write(data))


def read_shards(folder: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All rows listed by the manifest: (N, dim) float32 embeddings and N metadata dicts."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    embs, meta = [], []
    for shard in manifest["shards"]:
        emb, rows = load_shard(folder, shard)
        embs.append(emb)
        meta.extend(rows)
    dim = manifest["dim"]
    return (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)), meta
