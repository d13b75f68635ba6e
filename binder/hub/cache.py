"""Where named models live on disk, and what of each is there.

Layout under ``$ANYBIND_HOME`` (default ``~/.cache/anybind``)::

    downloads/<filename>         the released file, exactly as published (size and sha256 checked)
    downloads/<filename>.part    a download in progress; the next attempt resumes it
    downloads/.<filename>.json   for an entry without a sha256: the URL, size and sha256 of the
                                 download that passed every check and left <filename> there
    models/<name>/               the converted model folder: model.safetensors + config.json
    models/<name>/source.json    which file (URL, sha256) and preset the folder was converted from
    locks/<name>.lock            held while one process downloads or converts <name>

A file copied by hand to ``downloads/<filename>`` is checked and used as if downloaded when its
entry has a sha256. For an entry without one there is nothing to check it against: only the file
that a checked download left there (the record matches its URL, size and sha256) is used, anything
else is an ``UnverifiedFileError`` that gives its sha256 to pin. The model folder appears whole
or not at all (``binder.io.atomic_dir``); once it exists the download is no longer needed to run
the model and may be deleted.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binder.hub.catalog import ModelEntry

HOME_ENV = "ANYBIND_HOME"
DEFAULT_HOME = "~/.cache/anybind"
SOURCE_FILE = "source.json"
MODEL_FILES = ("model.safetensors", "config.json")


def hub_home() -> Path:
    """The cache root: ``$ANYBIND_HOME``, else ``~/.cache/anybind``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def download_path(entry: ModelEntry) -> Path:
    """Where the entry's released file is kept (and where a copy made by hand is looked for)."""
    return hub_home() / "downloads" / entry.filename


def record_path(entry: ModelEntry) -> Path:
    """Where the record of the entry's last checked download is kept (file names never start with '.')."""
    return hub_home() / "downloads" / f".{entry.filename}.json"


def read_record(entry: ModelEntry) -> dict[str, Any] | None:
    """The record of the entry's last checked download, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads(record_path(entry).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def partial_path(target: Path) -> Path:
    """The in-progress name of a download."""
    return target.with_name(target.name + ".part")


def model_dir(entry: ModelEntry) -> Path:
    """The converted model folder of the entry."""
    return hub_home() / "models" / entry.name


def source_record(entry: ModelEntry, sha256: str) -> dict[str, Any]:
    """What ``source.json`` records: enough to tell whether a folder still matches its entry."""
    return {"name": entry.name, "kind": entry.kind, "url": entry.url, "filename": entry.filename,
            "size": entry.size, "sha256": sha256, "preset": entry.preset}


def is_converted(entry: ModelEntry) -> bool:
    """True when the model folder is complete and was converted from the file the entry describes.

    A folder without ``source.json`` (put there by hand) is taken as it is; one converted from
    another file or preset (the entry was redefined) is not.
    """
    folder = model_dir(entry)
    if not all((folder / f).is_file() for f in MODEL_FILES):
        return False
    try:
        record = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("kind") != entry.kind or record.get("preset") != entry.preset:
        return False
    if entry.sha256 is not None:
        return bool(record.get("sha256") == entry.sha256)
    return bool(record.get("url") == entry.url and (entry.size is None or record.get("size") == entry.size))


@dataclass(frozen=True)
class CacheState:
    """What of an entry is on disk: the model folder, the released file, a partial download."""

    model: Path | None
    download: Path | None
    partial: Path | None
    partial_bytes: int

    @property
    def label(self) -> str:
        if self.model is not None:
            return "converted"
        if self.download is not None:
            return "downloaded"
        if self.partial_bytes:
            return "partial"
        return "not downloaded"


def cache_state(entry: ModelEntry) -> CacheState:
    """The entry's state in the cache (no file is read beyond ``source.json``)."""
    raw = download_path(entry)
    part = partial_path(raw)
    return CacheState(model=model_dir(entry) if is_converted(entry) else None,
                      download=raw if raw.is_file() else None,
                      partial=part if part.is_file() else None,
                      partial_bytes=part.stat().st_size if part.is_file() else 0)


def human_size(size: int | None) -> str:
    """``4803584173`` → ``4.5 GiB`` (``?`` when unknown)."""
    if size is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold ``locks/<name>.lock`` so that two processes never fetch or convert the same model at once.

    A second process waits (saying so on stderr), then finds the work done.
    """
    folder = hub_home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"anybind: waiting for another process that is fetching {name} ...", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
