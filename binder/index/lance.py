"""Export an index to an embedded LanceDB table (vectors + metadata columns).

LanceDB keeps a large collection on disk and searches it without loading every vector into
memory, which is why it is the store of choice for collections that outgrow a snapshot. The
export streams one shard at a time from a single manifest read, so memory stays at one shard;
the table is replaced as a whole, so a re-export is always a clean copy of one generation.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from binder.errors import AnybindError, IndexDamageError, IndexFileMissingError, IndexStoreError
from binder.index.integrity import load_checked_shard
from binder.index.store import SNAPSHOT_RETRIES, read_index_manifest

INSTALL_HINT = "LanceDB is not installed: pip install 'anybind[lance]' (lancedb, pyarrow)"
VECTOR = "vector"


def _require():
    try:
        import lancedb
        import pyarrow as pa
    except ImportError:
        raise AnybindError(INSTALL_HINT) from None
    return lancedb, pa


def schema(pa, dim: int, manifest: dict[str, Any]):
    """Arrow schema of the table; the index's model, generation and dim ride along as metadata."""
    fields = [pa.field(VECTOR, pa.list_(pa.float32(), dim)), pa.field("path", pa.string()),
              pa.field("modality", pa.string()), pa.field("size", pa.int64()), pa.field("mtime_ns", pa.int64()),
              pa.field("hash", pa.string()), pa.field("shard", pa.string()), pa.field("row", pa.int32())]
    meta = {"anybind.model": manifest.get("model") or "", "anybind.generation": str(manifest["generation"]),
            "anybind.dim": str(dim)}
    return pa.schema(fields, metadata=meta)


def _batches(pa, index_dir: str | os.PathLike, manifest: dict[str, Any], sch, damaged: list) -> Iterator[Any]:
    """One record batch of live rows per (checked) shard; damage, or a shard file gone (compaction),
    is noted in ``damaged`` (LanceDB may wrap what the generator raises)."""
    dim = int(manifest["dim"])
    for entry in manifest["shards"]:
        try:
            emb, meta = load_checked_shard(Path(index_dir), entry, dim)
        except IndexDamageError as exc:
            damaged.append(exc)
            raise
        dead = set(entry.get("dead", ()))
        keep = [i for i in range(len(meta)) if i not in dead]
        if not keep:
            continue
        vectors = np.ascontiguousarray(emb[keep], dtype=np.float32).reshape(-1)
        cols = [pa.FixedSizeListArray.from_arrays(pa.array(vectors, pa.float32()), dim)]
        cols += [pa.array([meta[i][name] for i in keep], sch.field(name).type)
                 for name in ("path", "modality", "size", "mtime_ns", "hash")]
        cols += [pa.array([entry["id"]] * len(keep), pa.string()), pa.array(keep, pa.int32())]
        yield pa.RecordBatch.from_arrays(cols, schema=sch)


def export_lance(index_dir: str | os.PathLike, lance_dir: str | os.PathLike, table: str = "anybind") -> int:
    """Write the index's live rows to table ``table`` in the LanceDB folder ``lance_dir`` (replacing
    it). Returns the number of rows exported."""
    lancedb, pa = _require()
    db = lancedb.connect(os.fspath(lance_dir))
    for _ in range(SNAPSHOT_RETRIES):
        manifest = read_index_manifest(index_dir)
        sch = schema(pa, int(manifest["dim"]), manifest)
        damaged: list[IndexDamageError] = []
        reader = pa.RecordBatchReader.from_batches(sch, _batches(pa, index_dir, manifest, sch, damaged))
        try:
            tbl = db.create_table(table, data=reader, schema=sch, mode="overwrite")
        except Exception:
            if not damaged:
                raise
            if isinstance(damaged[0], IndexFileMissingError) and _moved_on(index_dir, manifest):
                continue  # a shard was compacted away while we read: export the new generation
            raise damaged[0] from None
        return tbl.count_rows()
    raise IndexStoreError(f"{index_dir}: shards kept disappearing while exporting; is a writer compacting?")


def _moved_on(index_dir: str | os.PathLike, manifest: dict[str, Any]) -> bool:
    """True if a writer committed since ``manifest`` was read."""
    return read_index_manifest(index_dir)["generation"] != manifest["generation"]


@contextmanager
def _reading(lance_dir: str | os.PathLike, table: str) -> Iterator[Any]:
    """The opened ``table``; LanceDB's own errors (missing or damaged table) become one typed
    IndexStoreError naming the folder and the table."""
    lancedb, _ = _require()
    try:
        yield lancedb.connect(os.fspath(lance_dir)).open_table(table)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IndexStoreError(f"{lance_dir}: cannot read LanceDB table {table!r} ({exc})") from None


def search_lance(lance_dir: str | os.PathLike, query: np.ndarray, k: int = 10, table: str = "anybind",
                 modality: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` rows of an exported table most similar (cosine) to ``query``, best first; each
    dict holds the metadata columns and ``score`` (cosine similarity)."""
    with _reading(lance_dir, table) as tbl:
        q = tbl.search(np.asarray(query, dtype=np.float32).reshape(-1), vector_column_name=VECTOR)
        q = q.distance_type("cosine").limit(k)
        if modality is not None:
            q = q.where(f"modality = '{modality.replace(chr(39), chr(39) * 2)}'", prefilter=True)
        rows = q.select(["path", "modality", "size", "mtime_ns", "hash", "shard", "row"]).to_list()
    return [{**{c: r[c] for c in r if c != "_distance"}, "score": 1.0 - float(r["_distance"])} for r in rows]


def lance_tables(folder: str | os.PathLike) -> list[str]:
    """The tables of the LanceDB folder ``folder`` (what ``export_lance`` writes), sorted; [] if none."""
    return sorted(p.name[:-len(".lance")] for p in Path(folder).glob("*.lance") if p.is_dir())


def lance_table_info(lance_dir: str | os.PathLike, table: str = "anybind") -> dict[str, Any]:
    """The exported index's ``model`` (None if it recorded none), ``dim`` and ``generation``."""
    with _reading(lance_dir, table) as tbl:
        meta = tbl.schema.metadata or {}
    get = lambda key: meta.get(f"anybind.{key}".encode(), b"").decode() or None  # noqa: E731
    model = get("model")
    return {"model": None if model in (None, "None") else model,  # "None": older exports wrote a missing model so
            "dim": int(get("dim") or 0), "generation": int(get("generation") or 0)}
