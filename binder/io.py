"""Crash-safe writes: a reader sees a whole file (or folder) or the old one, never half of either.

Every writer in anybind goes through here. A file is written under a temp name in its own folder,
flushed and fsynced, renamed onto its target, and the folder is fsynced so that the rename
survives a power cut. A folder (a checkpoint) is built beside its target and swapped in whole.
Temp names keep the target's suffixes (``.shard.tmp-123.npy``) so libraries that pick a format by
extension still do, and ``is_temp_name`` recognizes them so leftovers of a crash can be swept.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".tmp-"


def temp_name(path: Path) -> Path:
    """A temp sibling of ``path``, unique to this process, with the same suffixes."""
    stem, dot, ext = path.name.partition(".")
    return path.with_name(f".{stem}{TEMP_MARK}{os.getpid()}{dot}{ext}")


def is_temp_name(name: str) -> bool:
    """True for names ``temp_name`` makes: what a crashed write may have left behind."""
    return name.startswith(".") and TEMP_MARK in name


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's bytes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path to write ``path`` through; on success it is fsynced and renamed onto ``path``.

    For libraries that write by file name (safetensors, faiss, PIL). On any exception the temp file
    is removed and ``path`` is untouched. ``durable=False`` skips the fsyncs (caches that can be
    rebuilt).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], durable: bool = True) -> None:
    """Write ``path`` by calling ``write(binary_file)`` on a temp file, then rename it into place."""
    with atomic_path(path, durable) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    atomic_write(path, lambda fh: fh.write(data), durable)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(path: str | os.PathLike, data: Any, durable: bool = True, **dumps: Any) -> None:
    """Replace ``path`` with ``data`` as JSON (``dumps`` options passed to ``json.dumps``)."""
    atomic_write_text(path, json.dumps(data, **{"indent": 2, **dumps}), durable)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path``; on success it replaces ``path`` whole.

    The files written into it are fsynced before the swap. Between the two renames of the swap
    the old folder lives on as ``<name>.old``, so a crash there loses nothing that was complete.
    """
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                fsync_file(f)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
