"""The indexed files the server may hand out, and the response that streams one.

A row of the index names a file, but what is on disk under that name now may not be what was
indexed. ``served_file`` lets a file out only if

* its real path (every symbolic link resolved) is inside a root the index records
  (``binder.index.store.index_roots``: the folders the builds were given; for an index written
  before roots were recorded, the folders holding its rows), so a link to ``/etc/passwd``, or a file
  replaced after indexing by such a link, is a 404;
* it is a regular file whose size and mtime are those the row records, or, when they changed, whose
  content hash still is (a touched file); anything else is a 409 (``item_changed``).

An item id, on ``/items/{id}`` and ``/thumbs/{id}.png`` alike, is a row number written as one
(``parse_id``): decimal digits without a sign or a leading zero, so each row has one name and
anything else (``-1``, ``01``, ``+1``, ``..``) is a 400 (``invalid_id``).

``open_checked`` then opens that real path without following a link (``O_NOFOLLOW``) and checks the
open file is the one just checked (device, inode, size, mtime), so a swap between the check and the
open is a 409 too. ``FileStream`` sends it, whole or one byte range (``parse_range``): a malformed
range is a 400 and one past the end a 416 (``Content-Range: bytes */SIZE``), both in the API's JSON
shape, since they are raised before the response starts.
"""
from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
from email.utils import formatdate
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import anyio
from starlette.responses import Response

from binder.embed.shards import file_hash
from binder.serve.errors import ItemNotFoundError, ServeError, one_line

CHUNK = 256 << 10
_RANGE = re.compile(r"([0-9]{0,19})-([0-9]{0,19})")
_ID = re.compile(r"0|[1-9][0-9]{0,11}")


class ItemChangedError(ServeError):
    """The file of a row is no longer the one that was indexed (409)."""

    status, kind = 409, "item_changed"


def parse_id(text: str) -> int:
    """An item id: a row number of the index as written by the server (no sign, no leading zero,
    at most 12 digits); anything else (``..``, a path, ``-1``, ``01``) is a 400."""
    if not _ID.fullmatch(text):
        raise ServeError(f"an item id must be a row number of the index, without a sign or leading zeros, "
                         f"such as /items/0 (got {one_line(text, 60)!r})", kind="invalid_id")
    return int(text)


def inside(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    """Whether ``path`` (a real path) is one of ``roots`` or below one of them."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def served_file(row: dict[str, Any], roots: tuple[str, ...], item_id: int) -> tuple[Path, os.stat_result]:
    """(real path, its stat) of the file of ``row`` if it may be served (module docstring), else the
    typed error: ItemNotFoundError (404) or ItemChangedError (409)."""
    shown = f"item {item_id} ({Path(str(row.get('path', ''))).name})"
    real = os.path.realpath(str(row.get("path", "")))
    if not inside(real, roots):
        raise ItemNotFoundError(f"{shown}: its file resolves outside the folders this index was built from "
                                f"(a symbolic link out of them is never served)")
    try:
        st = os.stat(real)
    except OSError:
        raise ItemNotFoundError(f"{shown}: its file is no longer there") from None
    if not stat.S_ISREG(st.st_mode):
        raise ItemNotFoundError(f"{shown}: its file is no longer there (not a regular file now)")
    if not same_as_indexed(real, st, row):
        raise ItemChangedError(f"{shown}: the file changed since it was indexed; `anybind index add` "
                               f"indexes it again")
    return Path(real), st


def same_as_indexed(path: str, st: os.stat_result, row: dict[str, Any]) -> bool:
    """Size and mtime as indexed, or (mtime moved, size the same) the content hash as indexed."""
    if st.st_size != row.get("size"):
        return False
    if st.st_mtime_ns == row.get("mtime_ns"):
        return True
    try:
        return file_hash(path) == row.get("hash")
    except OSError:
        return False


def open_checked(path: Path, st: os.stat_result, item_id: int) -> BinaryIO:
    """``path`` opened for reading without following a link, if it is still the file ``st`` describes."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        raise ItemChangedError(f"item {item_id} ({path.name}): the file changed while it was being opened") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
        os.close(fd)
        raise ItemChangedError(f"item {item_id} ({path.name}): the file changed while it was being opened")
    return os.fdopen(fd, "rb")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of the one byte range ``header`` asks for; None: the whole file (no
    header, or several ranges, which a server may answer with the whole file). A malformed header is
    a 400 (``invalid_range``), a range that starts past the end a 416 (``range_not_satisfiable``)."""
    if header is None:
        return None
    shown = repr(header[:80])
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise ServeError(f"Range {shown}: only byte ranges are served, as 'bytes=START-END'", kind="invalid_range")
    parts = [p.strip() for p in spec.split(",")]
    spans = []
    for part in parts:
        match = _RANGE.fullmatch(part)
        if match is None or match.group(0) == "-":
            raise ServeError(f"Range {shown}: write 'bytes=START-END', 'bytes=START-' or 'bytes=-LAST'",
                             kind="invalid_range")
        first, last = match.groups()
        if first and last and int(last) < int(first):
            raise ServeError(f"Range {shown}: the range ends before it starts", kind="invalid_range")
        spans.append((first, last))
    if len(spans) > 1:
        return None
    first, last = spans[0]
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise _unsatisfiable(shown, size)
        return max(0, size - count), size
    start = int(first)
    if start >= size:
        raise _unsatisfiable(shown, size)
    return start, size if not last else min(int(last) + 1, size)


def _unsatisfiable(shown: str, size: int) -> ServeError:
    error = ServeError(f"Range {shown}: the file has {size} bytes", status=416, kind="range_not_satisfiable")
    error.headers = {"Content-Range": f"bytes */{size}"}
    return error


def etag_of(st: os.stat_result) -> str:
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return '"' + hashlib.blake2b(key, digest_size=12).hexdigest() + '"'


class FileStream(Response):
    """An open file sent whole (200) or as one byte range (206); it is closed when the response ends,
    and the transfer stops when the client goes away."""

    def __init__(self, file: BinaryIO, st: os.stat_result, name: str, span: tuple[int, int] | None,
                 headers: dict[str, str] | None = None):
        self.file = file
        self.start, self.end = span if span is not None else (0, st.st_size)
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        quoted = quote(name)
        disposition = f'inline; filename="{name}"' if quoted == name else f"inline; filename*=utf-8''{quoted}"
        all_headers = {"Accept-Ranges": "bytes", "Content-Length": str(self.end - self.start),
                       "Content-Disposition": disposition, "ETag": etag_of(st),
                       "Last-Modified": formatdate(st.st_mtime, usegmt=True), **(headers or {})}
        if span is not None:
            all_headers["Content-Range"] = f"bytes {self.start}-{self.end - 1}/{st.st_size}"
        super().__init__(None, status_code=206 if span is not None else 200, headers=all_headers, media_type=media)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope.get("method", "GET").upper() == "HEAD" or self.start == self.end:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            async with anyio.create_task_group() as group:
                async def stream() -> None:
                    await self._send_body(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()
        finally:
            self.file.close()

    async def _send_body(self, send: Any) -> None:
        position, fd = self.start, self.file.fileno()
        while position < self.end:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, self.end - position), position)
            if not chunk:  # the file shrank under us: end the response short rather than hang
                raise OSError(f"{self.file.name}: shorter than when it was opened")
            position += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": position < self.end})
