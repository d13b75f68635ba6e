"""``anybind index verify`` and ``anybind index repair``: find damage, and drop it through a commit.

``verify_index`` runs every check a reader runs plus the embeddings' content hashes, and reports
all damage (not just the first) one file at a time. ``repair_index`` takes the writer lock, drops
every damaged shard from the manifest and commits through the normal atomic commit, then lists the
files whose rows went with them: their rows are no longer live, so the next ``anybind index add``
over the same folders embeds them again. A manifest too damaged to trust at all (not JSON, not an
object, a required key missing or of the wrong type) is replaced by an empty one of the same dim
and model where those can still be read; then every file the folder's shards named is listed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.shards import MANIFEST
from binder.errors import IndexDamageError, IndexStoreError
from binder.index.integrity import (
    INDEX_VERSION,
    MAX_METADATA_LINE,
    Damage,
    check_shard,
    duplicate_paths,
    is_index_like,
    load_manifest_json,
    manifest_damage,
)
from binder.index.writer import IndexWriter, new_manifest

ANN_DIR = "ann"
_SHARD_FILE = re.compile(r"^(embeddings-.+\.npy|metadata-.+\.jsonl)$")
_NUMBERED_FILE = re.compile(r"^(?:embeddings|metadata)-(\d+)\.(?:npy|jsonl)$")


@dataclass
class Scan:
    """What ``verify`` found: the manifest as parsed (``None`` if unreadable), all damage, and
    the rows of every whole shard by its position in the manifest."""

    folder: Path
    raw: Any
    damages: list[Damage]
    whole: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def fatal(self) -> bool:
        return any(d.fatal for d in self.damages)


@dataclass
class VerifyReport:
    """The damage of an index, in the order found; ``whole`` when there is none."""

    folder: str
    damages: list[Damage]
    shards: int = 0
    rows: int = 0

    @property
    def whole(self) -> bool:
        return not self.damages

    def lines(self) -> list[str]:
        """One line per damaged file: ``PATH: damage[; damage...]``."""
        by_file: dict[str, list[str]] = {}
        for d in self.damages:
            by_file.setdefault(d.path, []).append(d.damage)
        return [f"{path}: {'; '.join(found)}" for path, found in by_file.items()]


@dataclass
class RepairReport:
    """What ``repair_index`` did: damage found, shards dropped, and the files to embed again.

    ``reembed`` holds the paths whose rows were dropped (``anybind index add`` restores them);
    ``unknown_rows`` counts dropped rows whose file could not be read from the damaged metadata.
    """

    folder: str
    damages: list[Damage] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    reembed: list[str] = field(default_factory=list)
    unknown_rows: int = 0
    repaired: bool = False
    generation: int = 0
    count: int = 0
    notes: list[str] = field(default_factory=list)


def scan_index(folder: str | os.PathLike, full: bool = True) -> Scan:
    """Check the whole index (``full``: content hashes too), collecting every damage found.

    Raises IndexStoreError only when ``folder`` is not an index at all (no manifest, embed output,
    another version)."""
    folder = Path(folder)
    try:
        raw = load_manifest_json(folder)
    except FileNotFoundError:
        raise IndexStoreError(f"{folder}: not an anybind index (no {MANIFEST})") from None
    except IndexDamageError as exc:
        return Scan(folder, None, [Damage(exc.path, exc.damage, fatal=True)])
    except OSError as exc:
        raise IndexStoreError(f"{folder}: unreadable index manifest ({exc.strerror or exc})") from None
    if isinstance(raw, dict) and not is_index_like(raw):
        raise IndexStoreError(f"{folder}: not an anybind index")
    if isinstance(raw, dict) and isinstance(raw.get("version"), int) and raw["version"] != INDEX_VERSION:
        raise IndexStoreError(f"{folder}: unsupported index version {raw['version']!r}")
    scan = Scan(folder, raw, manifest_damage(folder, raw))
    if not scan.fatal:
        _scan_shards(scan, full)
    return scan


def _scan_shards(scan: Scan, full: bool) -> None:
    bad = {d.entry for d in scan.damages}
    for pos, entry in enumerate(scan.raw["shards"]):
        if pos not in bad:
            checked = check_shard(scan.folder, entry, scan.raw["dim"], full, pos)
            scan.damages += checked.damages
            if not checked.damages and checked.rows is not None:
                scan.whole[pos] = checked.rows
    entries = scan.raw["shards"]
    scan.damages += duplicate_paths(scan.folder, ((p, entries[p], rows) for p, rows in scan.whole.items()))


def verify_index(folder: str | os.PathLike) -> VerifyReport:
    """Every check of a reader plus content hashes; all damage found, one entry per problem."""
    scan = scan_index(folder, full=True)
    shards = len(scan.raw["shards"]) if not scan.fatal else 0
    rows = 0 if scan.fatal else sum(len(r) - len(scan.raw["shards"][p]["dead"]) for p, r in scan.whole.items())
    return VerifyReport(str(folder), scan.damages, shards, rows)


def repair_index(folder: str | os.PathLike, model: str | None = None, wait_lock: float = 0.0) -> RepairReport:
    """Drop every damaged shard through a normal commit (under the writer lock).

    ``model`` is recorded only when the manifest is too damaged to say which model it was.
    Returns what was dropped and which files to embed again (``anybind index add`` does that).
    """
    folder = Path(folder)
    report = RepairReport(str(folder))

    def load(path: Path) -> tuple[dict[str, Any], set[str]]:
        return _plan(scan_index(path, full=True), report, model)

    with IndexWriter(folder, create=False, wait=wait_lock, load=load) as writer:
        if report.repaired:
            writer.commit()  # generation + 1, count recomputed from the shards kept
        report.generation, report.count = writer.manifest["generation"], writer.manifest.get("count", 0)
    if report.repaired:
        shutil.rmtree(folder / ANN_DIR, ignore_errors=True)  # cached ANN indexes of the damaged state
    report.reembed = sorted(set(report.reembed))
    return report


def _plan(scan: Scan, report: RepairReport, model: str | None) -> tuple[dict[str, Any], set[str]]:
    """(the manifest to commit, the file names the manifest on disk lists) for a repair."""
    report.damages = scan.damages
    report.repaired = bool(scan.damages)
    if scan.fatal:
        return _fresh_manifest(scan, report, model)
    raw = scan.raw
    drop = {d.entry for d in scan.damages if d.entry is not None}
    keep = [e for p, e in enumerate(raw["shards"]) if p not in drop]
    live: set[str] = set()
    for p, rows in scan.whole.items():
        dead = set(raw["shards"][p]["dead"])
        live.update(row["path"] for i, row in enumerate(rows) if p not in drop and i not in dead)
    for pos in sorted(drop):
        entry = raw["shards"][pos]
        report.dropped.append(_describe(entry, pos))
        paths, unknown = _salvage_paths(scan.folder, entry)
        report.reembed += [p for p in paths if p not in live]
        report.unknown_rows += unknown
    manifest = dict(raw, shards=keep)
    manifest["next_shard"] = max(_int_or(raw.get("next_shard"), 0), _next_free(scan.folder, raw["shards"]))
    return manifest, _listed_names(raw["shards"])


def _fresh_manifest(scan: Scan, report: RepairReport, model: str | None) -> tuple[dict[str, Any], set[str]]:
    """An empty manifest of the same dim and model; every shard file in the folder is dropped."""
    raw = scan.raw if isinstance(scan.raw, dict) else {}
    dim = _int_or(raw.get("dim"), 0) or _dim_from_files(scan.folder)
    if dim <= 0:
        raise IndexStoreError(f"{scan.folder}: cannot repair: {MANIFEST} is unreadable and no shard says the "
                              f"embedding dim; build the index again (`anybind index build`)")
    recorded = raw.get("model") if isinstance(raw.get("model"), str) else None
    if recorded is None and "model" not in raw:
        report.notes.append(f"the manifest does not say which model built the index; recorded "
                            f"{model or 'the untrained default'} (pass --model to choose)")
    manifest = new_manifest(dim, recorded or model)
    manifest["generation"] = _int_or(raw.get("generation"), 0)
    manifest["next_shard"] = _next_free(scan.folder, [])
    files = sorted(p.name for p in scan.folder.iterdir() if _SHARD_FILE.match(p.name))
    for name in files:
        if name.startswith("metadata-"):
            report.dropped.append(name)
            paths, unknown = _salvage_paths(scan.folder, {"metadata": name})
            report.reembed += paths
            report.unknown_rows += unknown
    return manifest, set(files)


def _describe(entry: Any, pos: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return f"shard {entry['id']}"
    return f"shard entry {pos}"


def _listed_names(entries: list[Any]) -> set[str]:
    """Plain file names the on-disk manifest lists (a damaged name is never a file to delete)."""
    names = set()
    for entry in entries:
        if isinstance(entry, dict):
            for role in ("embeddings", "metadata"):
                name = entry.get(role)
                if isinstance(name, str) and name and os.path.basename(name) == name and name not in (".", ".."):
                    names.add(name)
    return names


def _salvage_paths(folder: Path, entry: Any) -> tuple[list[str], int]:
    """The file paths of a dropped shard's live rows, read leniently from its metadata (if that is
    a file inside the folder), and how many of its rows could not be read."""
    rows = _int_or(entry.get("rows"), 0) if isinstance(entry, dict) else 0
    name = entry.get("metadata") if isinstance(entry, dict) else None
    dead: list[Any] = entry["dead"] if isinstance(entry, dict) and isinstance(entry.get("dead"), list) else []
    if not isinstance(name, str) or name not in _listed_names([entry]):
        return [], rows
    path = folder / name
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(folder) or not path.is_file():
        return [], rows
    if path.stat().st_size > (max(rows, 1) + 1) * MAX_METADATA_LINE:
        return [], rows
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    known, unreadable = [], 0
    for i, line in enumerate(lines):
        if i not in dead:
            found = _row_path(line)
            known += [found] if found else []
            unreadable += 0 if found else 1
    return known, unreadable + max(0, rows - len(dead) - len(known) - unreadable)


def _row_path(line: bytes) -> str | None:
    """The ``path`` of one metadata line, or None if the line is not a row with a path."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    path = row.get("path") if isinstance(row, dict) else None
    return path if isinstance(path, str) and os.path.isabs(path) else None


def _next_free(folder: Path, entries: list[Any]) -> int:
    """One past every numbered shard in the folder or the manifest (a writer must not reuse them)."""
    ids = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED_FILE.match(p.name))]
    ids += [int(e["id"]) for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str) and e["id"].isdigit()]
    return max(ids, default=-1) + 1


def _dim_from_files(folder: Path) -> int:
    """The dim of the first readable 2-D ``.npy`` shard in the folder (0 if none)."""
    for path in sorted(folder.glob("embeddings-*.npy")):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            continue
        if isinstance(arr, np.ndarray) and arr.ndim == 2 and arr.shape[1] > 0:
            return int(arr.shape[1])
    return 0


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
