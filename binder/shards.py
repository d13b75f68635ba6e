"""Row-aligned embedding shards: ``embeddings-NNNNN.npy`` (float32) + ``metadata-NNNNN.jsonl``.

Each shard is written to temp files and renamed into place, data before metadata, and the
``manifest.json`` that lists complete shards is replaced last: a reader that trusts the manifest
never sees a half-written shard.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
        idx = len(self.shards)
        emb_name, meta_name = f"embeddings-{idx:05d}.npy", f"metadata-{idx:05d}.jsonl"
        rows = np.concatenate(self._rows)
        _atomic_write_bytes(self.folder / emb_name, lambda fh: np.save(fh, rows))
        lines = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in self._meta).encode()
        _atomic_write_bytes(self.folder / meta_name, lambda fh: fh.write(lines))
        self.shards.append({"embeddings": emb_name, "metadata": meta_name, "rows": len(self._meta)})
        self.count += len(self._meta)
        self._rows, self._meta = [], []
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {"dim": self.dim, "count": self.count, "shards": self.shards, **self.info}
        data = json.dumps(manifest, indent=2).encode()
        _atomic_write_bytes(self.folder / MANIFEST, lambda fh: fh.write(data))

    def close(self) -> None:
        self.flush()
        if not self.shards:
            self._write_manifest()


def read_shards(folder: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All rows listed by the manifest: (N, dim) float32 embeddings and N metadata dicts."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    embs, meta = [], []
    for shard in manifest["shards"]:
        embs.append(np.load(folder / shard["embeddings"], allow_pickle=False))
        with open(folder / shard["metadata"], encoding="utf-8") as fh:
            meta.extend(json.loads(line) for line in fh if line.strip())
    dim = manifest["dim"]
    return (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)), meta
