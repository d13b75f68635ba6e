"""Approximate (faiss) indexes cached inside an index folder, keyed by snapshot generation.

``INDEX_DIR/ann/<backend>-g<generation>-n<rows>-<params>.faiss`` is written to a temp file and
renamed into place, so a reader sees a whole file or none. A cache file of another generation is
stale (the index changed) and is removed when a new one is written. The faiss index references
rows by position in the snapshot, which is why the generation and row count are in the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from binder.index.backends import BackendError, backend_class
from binder.index.backends.faiss import FaissBackend

ANN_DIR = "ann"


def cache_path(folder: str | os.PathLike, name: str, generation: int, rows: int, params: dict[str, Any]) -> Path:
    """Where the ``name`` index of this snapshot (and build parameters) lives."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(params.items()) if v is not None)
    stem = f"{name}-g{generation}-n{rows}" + (f"-{tag}" if tag else "")
    return Path(folder) / ANN_DIR / f"{stem}.faiss"


def cached_backend(folder: str | os.PathLike, snap: Any, name: str, progress: bool = False, **params) -> FaissBackend:
    """Load the cached ``name`` index for ``snap``, or build, save and return it."""
    cls = backend_class(name)
    if not issubclass(cls, FaissBackend):
        raise BackendError(f"{name!r} is not a cached approximate backend")
    build_keys = {"M", "ef_construction", "nlist", "m", "nbits"}
    path = cache_path(folder, name, snap.generation, len(snap.vectors),
                      {k: v for k, v in params.items() if k in build_keys})
    if path.is_file():
        try:
            return cls.load(path, snap.vectors, **params)
        except BackendError:
            raise
        except Exception:  # noqa: BLE001 - an unreadable or mismatched cache file is rebuilt, not fatal
            pass
    backend = cls(snap.vectors, progress=progress, **params)
    try:
        path.parent.mkdir(exist_ok=True)
        backend.save(path)
        _drop_stale(path)
    except OSError:
        pass  # a read-only index folder still searches; it just rebuilds each time
    return backend


def _drop_stale(keep: Path) -> None:
    """Remove cache files of the same backend for other generations."""
    prefix = keep.name.split("-g", 1)[0] + "-g"
    for other in keep.parent.glob(f"{prefix}*.faiss"):
        if other != keep:
            try:
                other.unlink()
            except OSError:
                pass
