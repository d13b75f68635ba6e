"""What readers and writers check before they trust an index folder.

A damaged index must never be read as whole. Every open checks, cheaply:

* ``manifest.json``: at most ``MAX_MANIFEST_BYTES``, JSON, an object, every required key of the
  right type, shard file names that are plain names inside the folder, each shard listed once,
  tombstones inside their shard, ``count`` equal to the live rows, ``next_shard`` past every
  numbered shard (so a writer never overwrites one);
* each shard as it is loaded: its files resolve inside the folder (no symlink out of it), exist,
  are regular files of the recorded byte size; the ``.npy`` is float32, 2-D, ``(rows, dim)``,
  every row finite and unit-norm (to ``UNIT_TOLERANCE``); the ``.jsonl`` is UTF-8, has one
  well-formed JSON row per recorded row, and matches its recorded blake2b hash;
* across shards: no file path live in two rows.

The metadata hash is checked on every load because the file is parsed line by line anyway (hashing
costs a fraction of parsing), and it is the only thing that catches reordered rows. The
embeddings hash is checked only by ``anybind index verify`` (``full=True``): vectors are the bulk
of an index, and damage that keeps a row finite and unit-norm with the right shape is rare enough
not to double the cost of every open. Old indexes whose manifest records no ``bytes``/``hash``
get every check but those two.
"""
from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import MANIFEST, bytes_hash, file_hash
from binder.errors import IndexDamageError, IndexFileMissingError, IndexStoreError
from binder.vectors import UNIT_TOLERANCE

INDEX_FORMAT = "anybind-index"
INDEX_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20  # ~200k shards with full tombstone lists; far more than any real index
MAX_METADATA_LINE = 64 << 10
NPY_HEADER_SLACK = 64 << 10
MISSING = "missing"
ROLES = ("embeddings", "metadata")
ROW_TYPES: dict[str, type] = {"path": str, "modality": str, "size": int, "mtime_ns": int, "hash": str}
_HASH = re.compile(r"^blake2b:[0-9a-f]{40}$")
_NUMBERED = re.compile(r"^\d+$")
_INDEX_ONLY_KEYS = ("generation", "next_shard", "version")
_TOP_TYPES: dict[str, tuple[type, ...]] = {"version": (int,), "generation": (int,), "dim": (int,),
                                           "model": (str, type(None)), "shards": (list,)}
_RECOVERABLE_TYPES: dict[str, tuple[type, ...]] = {"count": (int,), "next_shard": (int,)}


@dataclass(frozen=True)
class Damage:
    """One thing wrong with one file of an index.

    ``entry`` is the position of the shard in the manifest's list it belongs to (None: the manifest
    as a whole); ``fatal`` marks manifest damage that leaves nothing of the manifest to trust.
    """

    path: str
    damage: str
    entry: int | None = None
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.damage}"

    def error(self) -> IndexDamageError:
        """The typed error a reader raises for this damage."""
        return IndexFileMissingError(self.path) if self.damage == MISSING else IndexDamageError(self.path, self.damage)


def raise_first(damages: Iterable[Damage]) -> None:
    """Raise the error of the first damage (all damages of that file joined), if there is any."""
    damages = list(damages)
    if damages:
        first = damages[0]
        same = [d.damage for d in damages if d.path == first.path]
        if same == [MISSING]:
            raise first.error()
        raise IndexDamageError(first.path, "; ".join(same))


# -- the manifest --------------------------------------------------------------------------------


def load_manifest_json(folder: Path) -> Any:
    """The parsed ``manifest.json`` of ``folder`` (any JSON value), its size bounded.

    FileNotFoundError if there is none (the caller says "not an index"); IndexDamageError if it is
    too big, unreadable or not JSON.
    """
    path = folder / MANIFEST
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open, a folder fail it
        raise IndexDamageError(path, "not a regular file")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_MANIFEST_BYTES:
            raise IndexDamageError(path, f"{size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold")
        data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise IndexDamageError(path, f"more than the {MAX_MANIFEST_BYTES} bytes a manifest may hold")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise IndexDamageError(path, f"not JSON ({_short(exc)})") from None


def is_index_like(manifest: Any) -> bool:
    """True for a manifest that is (or was) an index's, even if damaged; False for embed output."""
    return isinstance(manifest, dict) and (manifest.get("format") == INDEX_FORMAT
                                           or any(k in manifest for k in _INDEX_ONLY_KEYS))


def manifest_damage(folder: Path, manifest: Any) -> list[Damage]:
    """Everything wrong with a parsed index manifest (empty: it can be trusted)."""
    path = str(folder / MANIFEST)
    if not isinstance(manifest, dict):
        return [Damage(path, f"not a JSON object (a {_json_type(manifest)})", fatal=True)]
    fatal = _top_level_damage(manifest)
    if fatal:
        return [Damage(path, d, fatal=True) for d in fatal]
    damages = [Damage(path, d) for d in _recoverable_damage(manifest)]
    damages += _entries_damage(path, manifest["shards"])
    if not damages:
        damages += _totals_damage(path, manifest)
    return damages


def _top_level_damage(manifest: dict[str, Any]) -> list[str]:
    found = []
    if manifest.get("format") != INDEX_FORMAT:
        found.append("missing key 'format'" if "format" not in manifest else f"format {manifest['format']!r}")
    for key, types in _TOP_TYPES.items():
        found += _type_damage(manifest, key, types)
    if not found and manifest["dim"] < 1:
        found.append(f"dim {manifest['dim']} is not positive")
    if not found and manifest["generation"] < 0:
        found.append(f"generation {manifest['generation']} is negative")
    return found


def _recoverable_damage(manifest: dict[str, Any]) -> list[str]:
    found = []
    for key, types in _RECOVERABLE_TYPES.items():
        found += _type_damage(manifest, key, types) or (
            [f"{key} {manifest[key]} is negative"] if manifest[key] < 0 else [])
    return found


def _type_damage(obj: dict[str, Any], key: str, types: tuple[type, ...], where: str = "") -> list[str]:
    if key not in obj:
        return [f"{where}missing key {key!r}"]
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, types):
        want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        return [f"{where}{key!r} is a {_json_type(value)}, not {want}"]
    return []


def _entries_damage(path: str, entries: list[Any]) -> list[Damage]:
    damages: list[Damage] = []
    owner: dict[tuple[str, str], int] = {}
    for pos, entry in enumerate(entries):
        found = _entry_damage(entry)
        if not found:
            for key in (("shard", entry["id"]), ("file", entry["embeddings"]), ("file", entry["metadata"])):
                first = owner.setdefault(key, pos)
                if first != pos and not found:  # one line per entry: its first name listed before
                    found.append(f"{key[0]} {key[1]} is listed twice (shard entries {first} and {pos})")
        damages += [Damage(path, f"shard entry {pos}: {d}", entry=pos) for d in found]
    return damages


def _entry_damage(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"a {_json_type(entry)}, not an object"]
    found = [d for key, typ in (("id", str), ("rows", int), ("dead", list)) for d in _type_damage(entry, key, (typ,))]
    for role in ROLES:
        found += _type_damage(entry, role, (str,)) or _name_damage(entry[role], role)
    if found:
        return found
    if not _safe_name(entry["id"]):
        found.append(f"id {entry['id']!r} is not a plain name")
    if entry["embeddings"] == entry["metadata"]:
        found.append("embeddings and metadata are the same file")
    found += _dead_damage(entry["dead"], entry["rows"]) + _integrity_fields_damage(entry)
    return found


def _name_damage(name: str, role: str) -> list[str]:
    if os.path.isabs(name):
        return [f"{role} path {name!r} is absolute (shard files live in the index folder)"]
    if not _safe_name(name):
        return [f"{role} path {name!r} leaves the index folder or is not a plain file name"]
    return []


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") and not os.path.isabs(name)


def _dead_damage(dead: list[Any], rows: int) -> list[str]:
    if rows < 0:
        return [f"rows {rows} is negative"]
    if any(isinstance(d, bool) or not isinstance(d, int) for d in dead):
        return ["dead holds something that is not a row number"]
    if any(b <= a for a, b in zip(dead, dead[1:])) or (dead and (dead[0] < 0 or dead[-1] >= rows)):
        return [f"dead rows are not distinct rows of 0..{rows - 1} in order"]
    return []


def _integrity_fields_damage(entry: dict[str, Any]) -> list[str]:
    found = []
    for field, ok in (("bytes", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
                      ("hash", lambda v: isinstance(v, str) and bool(_HASH.match(v)))):
        if field in entry:
            value = entry[field]
            if not isinstance(value, dict) or set(value) != set(ROLES) or not all(ok(value[r]) for r in ROLES):
                found.append(f"{field!r} is not {{embeddings, metadata}} of the right kind")
    return found


def _totals_damage(path: str, manifest: dict[str, Any]) -> list[Damage]:
    found = []
    live = sum(e["rows"] - len(e["dead"]) for e in manifest["shards"])
    if manifest["count"] != live:
        found.append(Damage(path, f"count {manifest['count']}, but the shards hold {live} live rows"))
    numbered = [int(e["id"]) for e in manifest["shards"] if _NUMBERED.match(e["id"])]
    if numbered and manifest["next_shard"] <= max(numbered):
        found.append(Damage(path, f"next_shard {manifest['next_shard']} would overwrite shard {max(numbered):06d}"))
    return found


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join((str(exc) or type(exc).__name__).split())  # one line, whatever the library said
    return text if len(text) <= limit else text[:limit] + "..."


# -- the shards ----------------------------------------------------------------------------------


@dataclass
class ShardCheck:
    """A shard as checked: its arrays when whole enough to read, and what is wrong with it."""

    vectors: np.ndarray | None
    rows: list[dict[str, Any]] | None
    damages: list[Damage]


def check_shard(folder: Path, entry: dict[str, Any], dim: int, full: bool = False,
                pos: int | None = None) -> ShardCheck:
    """Check one (schema-valid) manifest entry's files; ``full`` also checks the embeddings hash."""
    meta, meta_damage = _check_metadata(folder, entry, pos)
    emb, emb_damage = _check_embeddings(folder, entry, dim, full, pos)
    return ShardCheck(emb, meta, emb_damage + meta_damage)


def load_checked_shard(folder: Path, entry: dict[str, Any], dim: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The shard's (rows, dim) float32 vectors and metadata rows; IndexDamageError if damaged."""
    checked = check_shard(folder, entry, dim)
    raise_first(checked.damages)
    assert checked.vectors is not None and checked.rows is not None
    return checked.vectors, checked.rows


def _open_shard_file(folder: Path, name: str, pos: int | None) -> tuple[Path, os.stat_result | None, list[Damage]]:
    """``folder/name`` if it resolves inside ``folder`` and is a regular file, else the damage."""
    path = folder / name
    real = os.path.realpath(path)
    if os.path.dirname(real) != os.path.realpath(folder):
        return path, None, [Damage(str(path), f"a link leading outside the index folder (to {real})", pos)]
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return path, None, [Damage(str(path), MISSING, pos)]
    except OSError as exc:
        return path, None, [Damage(str(path), f"cannot be read ({exc.strerror or exc})", pos)]
    if not stat.S_ISREG(st.st_mode):
        return path, None, [Damage(str(path), "not a regular file", pos)]
    return path, st, []


def _size_damage(entry: dict[str, Any], role: str, size: int) -> list[str]:
    want = entry.get("bytes", {}).get(role)
    return [] if want is None or want == size else [f"{size} bytes, the manifest records {want}"]


Rows = list[dict[str, Any]]


def _check_metadata(folder: Path, entry: dict[str, Any], pos: int | None) -> tuple[Rows | None, list[Damage]]:
    path, st, damages = _open_shard_file(folder, entry["metadata"], pos)
    if st is None:
        return None, damages
    found = _size_damage(entry, "metadata", st.st_size)
    if st.st_size > (entry["rows"] + 1) * MAX_METADATA_LINE:  # never read a file swapped for a huge one
        found.append(f"{st.st_size} bytes, far more than {entry['rows']} rows need")
        return None, [Damage(str(path), d, pos) for d in found]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Damage(str(path), f"cannot be read ({exc.strerror or exc})", pos)]
    want = entry.get("hash", {}).get("metadata")
    if want is not None and bytes_hash(data) != want:
        found.append("content differs from the recorded hash (rows edited or reordered)")
    rows, row_damage = parse_metadata(data, entry["rows"])
    found += row_damage
    return (rows if not found else None), [Damage(str(path), d, pos) for d in found]


def parse_metadata(data: bytes, want_rows: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a metadata file (one JSON object per line) and what is wrong with them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"not UTF-8 ({_short(exc)})"]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    found = [] if len(lines) == want_rows else [f"{len(lines)} lines, the manifest records {want_rows} rows"]
    rows, bad = [], []
    for i, line in enumerate(lines):
        row, problem = _parse_row(line)
        rows.append(row)
        if problem:
            bad.append(f"line {i + 1} {problem}")
    if bad:
        found.append("; ".join(bad[:3]) + (f" (and {len(bad) - 3} more lines)" if len(bad) > 3 else ""))
    return rows, found


def _parse_row(line: str) -> tuple[dict[str, Any], str | None]:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return {}, f"is not JSON ({_short(exc, 60)})"
    if not isinstance(row, dict):
        return {}, "is not a JSON object"
    for key, typ in ROW_TYPES.items():
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, typ):
            return row, f"has no {typ.__name__} {key!r}"
    if not os.path.isabs(row["path"]):
        return row, f"has a relative path {row['path']!r}"
    return row, None


def _check_embeddings(folder: Path, entry: dict[str, Any], dim: int, full: bool,
                      pos: int | None) -> tuple[np.ndarray | None, list[Damage]]:
    path, st, damages = _open_shard_file(folder, entry["embeddings"], pos)
    if st is None:
        return None, damages
    found = _size_damage(entry, "embeddings", st.st_size)
    if st.st_size > entry["rows"] * dim * 4 + NPY_HEADER_SLACK:
        found.append(f"{st.st_size} bytes, far more than {entry['rows']} rows of dim {dim} need")
        return None, [Damage(str(path), d, pos) for d in found]
    want = entry.get("hash", {}).get("embeddings")
    if full and want is not None and file_hash(path) != want:
        found.append("content differs from the recorded hash")
    vectors, problem = _read_npy(path)
    if vectors is not None:
        found += vector_damage(vectors, entry["rows"], dim)
    elif problem:
        found.append(problem)
    return (vectors if not found else None), [Damage(str(path), d, pos) for d in found]


def _read_npy(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        with open(path, "rb") as fh:
            return np.lib.format.read_array(fh, allow_pickle=False), None
    except (ValueError, EOFError, OSError) as exc:
        return None, f"not a readable .npy file ({_short(exc)})"


def vector_damage(vectors: np.ndarray, rows: int, dim: int) -> list[str]:
    """What is wrong with a shard's vectors: dtype, shape, non-finite or non-unit rows."""
    if vectors.dtype != np.float32:
        return [f"dtype {vectors.dtype}, not float32"]
    if vectors.ndim != 2 or vectors.shape[1:] != (dim,):
        return [f"shape {vectors.shape}, not (rows, {dim})"]
    found = [] if len(vectors) == rows else [f"{len(vectors)} rows, the manifest records {rows}"]
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        found.append(f"{int((~finite).sum())} rows are not finite (rows {_few(np.flatnonzero(~finite))})")
    norms = np.sqrt(np.einsum("ij,ij->i", vectors[finite], vectors[finite], dtype=np.float64))
    off = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if len(off):
        rows_off = np.flatnonzero(finite)[off]
        found.append(f"{len(off)} rows are not unit-norm (rows {_few(rows_off)}; norm {norms[off[0]]:.4g})")
    return found


def _few(ids: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:n])
    return shown + (", ..." if len(ids) > n else "")


def duplicate_paths(folder: Path, shards: Iterable[tuple[int, dict[str, Any], list[dict[str, Any]]]]) -> list[Damage]:
    """Damage for every file path that is live in more than one row (position, entry, rows)."""
    seen: dict[str, str] = {}
    damages = []
    for pos, entry, rows in shards:
        dead = set(entry["dead"])
        here = str(folder / entry["metadata"])
        for i, row in enumerate(rows):
            if i in dead:
                continue
            where = f"{entry['metadata']} line {i + 1}"
            if row["path"] in seen:
                damages.append(Damage(here, f"line {i + 1}: {row['path']} is also live in {seen[row['path']]}", pos))
            else:
                seen[row["path"]] = where
    return damages


def check_index_manifest(folder: Path, manifest: Any) -> dict[str, Any]:
    """``manifest`` if it is a whole index manifest; raises the typed error of its first damage."""
    if not isinstance(manifest, dict):  # every manifest anybind writes is an object
        raise_first(manifest_damage(folder, manifest))
    if not is_index_like(manifest):
        hint = " (it looks like `anybind embed` output)" if isinstance(manifest, dict) and "shards" in manifest else ""
        raise IndexStoreError(f"{folder}: not an anybind index{hint}")
    if isinstance(manifest.get("version"), int) and manifest["version"] != INDEX_VERSION:
        raise IndexStoreError(f"{folder}: unsupported index version {manifest['version']!r}")
    raise_first(manifest_damage(folder, manifest))
    return manifest
