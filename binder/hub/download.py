"""Streamed, resumable, verified downloads into the cache.

Bytes go to ``<target>.part``. A dropped connection or a read timeout is resumed with an HTTP
``Range`` request, in this run (a few attempts) and in the next one (the ``.part`` file stays); a
server that answers a range request with the whole file (200 instead of 206) is followed from the
start. Only when the size and sha256 match the catalog is the file renamed into place; a mismatch
removes the ``.part`` and keeps nothing. A server that cannot be reached at all is an
``OfflineError`` saying where to put the file by hand.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import requests
import urllib3

from binder.hub.checksum import CHUNK, check_digest, check_size
from binder.hub.errors import ChecksumError, DownloadError, OfflineError
from binder.io import fsync_dir, fsync_file

DEFAULT_TIMEOUT = (15.0, 60.0)  # seconds to connect, seconds without a byte while reading
RETRIES = 5  # resumptions in one run after the connection drops
BACKOFF = 0.5  # seconds before the first resumption; doubled each time, at most 8
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)\Z")


class _Unreachable(Exception):
    """No connection could be made (refused, DNS, connect timeout)."""


class _Interrupted(Exception):
    """The transfer stopped part way; what arrived is kept and can be resumed."""


class _Partial:
    """The ``.part`` file and the sha256 of the bytes it holds, kept as they are appended."""

    def __init__(self, path: Path):
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        if path.is_file():
            with open(path, "rb") as fh:
                while block := fh.read(CHUNK):
                    self.digest.update(block)
                    self.size += len(block)

    def restart(self) -> None:
        """Drop what was received and start from byte 0."""
        self.path.write_bytes(b"")
        self.digest = hashlib.sha256()
        self.size = 0

    def append(self, fh: Any, block: bytes) -> None:
        fh.write(block)
        self.digest.update(block)
        self.size += len(block)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def download(url: str, target: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
             progress: bool = True, timeout: tuple[float, float] | None = None, retries: int | None = None,
             session: requests.Session | None = None) -> str:
    """Fetch ``url`` to ``target`` (through ``target.part``), check ``size`` and ``sha256``, return the sha256.

    ``progress`` shows a tqdm bar on stderr. Without ``size`` the server's Content-Length is the
    size checked; without ``sha256`` the computed digest is printed as unverified. ``timeout`` is
    (connect, read) seconds and ``retries`` the resumptions after a dropped connection (defaults:
    ``DEFAULT_TIMEOUT``, ``RETRIES``).
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    retries = RETRIES if retries is None else retries
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _Partial(target.with_name(target.name + ".part"))
    if size is not None and part.size > size:
        part.restart()
    http = session or requests.Session()
    connected, failures = False, 0
    try:
        while size is None or part.size < size:
            try:
                _check_space(url, target, size, part.size)
                _fetch(http, url, part, size, progress, timeout)
                break
            except _Unreachable as exc:
                if not connected:
                    raise OfflineError(url, str(exc), target, _expectation(size, sha256)) from None
                failures, reason = failures + 1, str(exc)
            except _Interrupted as exc:
                connected, failures, reason = True, failures + 1, str(exc)
            if failures > retries:
                raise DownloadError(url, f"{reason} ({failures} attempts); the {part.size} bytes received are kept "
                                         f"in {part.path} and the next run resumes from there")
            print(f"anybind: {reason}; resuming at byte {part.size}", file=sys.stderr)
            time.sleep(min(BACKOFF * 2 ** (failures - 1), 8.0))
    finally:
        if session is None:
            http.close()
    note = "the download was removed; nothing was cached"
    try:
        check_size(url, size, part.size, note)
        actual = part.digest.hexdigest()
        check_digest(url, sha256, actual, note)
    except ChecksumError:
        part.remove()
        raise
    fsync_file(part.path)
    os.replace(part.path, target)
    fsync_dir(target.parent)
    return actual


def _fetch(http: requests.Session, url: str, part: _Partial, size: int | None, progress: bool,
           timeout: tuple[float, float]) -> None:
    """One request: append the answer to ``part``; return when the file is complete."""
    from tqdm import tqdm

    # Ranges count the file's own bytes, never those of a compressed form.
    headers = {"Accept-Encoding": "identity", "User-Agent": _user_agent()}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    try:
        resp = http.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.SSLError as exc:
        raise DownloadError(url, f"TLS error ({_short(exc)})") from None
    except requests.exceptions.ConnectionError as exc:
        if exc.args and isinstance(exc.args[0], urllib3.exceptions.ProtocolError):  # connected, then dropped
            raise _Interrupted(f"the server closed the connection before answering ({_short(exc)})") from None
        raise _Unreachable(_why_unreachable(exc)) from None  # refused, DNS failure, connect timeout
    except requests.exceptions.Timeout:
        raise _Interrupted(f"no answer within {timeout[1]:g} s") from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(url, _short(exc)) from None
    with resp:
        total = _expected_total(resp, url, part, size)
        # A short body is detected below by counting; urllib3's own check would drop the bytes of the
        # last read (up to a chunk) that did arrive before the connection closed.
        if hasattr(resp.raw, "enforce_content_length"):
            resp.raw.enforce_content_length = False
        try:
            with open(part.path, "ab") as fh, tqdm(total=total, initial=part.size, unit="B", unit_scale=True,
                                                   unit_divisor=1024, desc=part.path.name[:-len(".part")],
                                                   disable=not progress, file=sys.stderr) as bar:
                for block in resp.iter_content(CHUNK):
                    part.append(fh, block)
                    bar.update(len(block))
                    if total is not None and part.size > total:
                        part.remove()
                        raise ChecksumError(url, "size", f"{total} bytes", f"more than {total} bytes",
                                            "the server sent more than it announced; nothing was cached")
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as exc:
            raise _Interrupted(f"connection lost after {part.size} bytes ({_short(exc)})") from None
    if total is not None and part.size < total:
        raise _Interrupted(f"connection closed after {part.size} of {total} bytes")


def _expected_total(resp: requests.Response, url: str, part: _Partial, size: int | None) -> int | None:
    """The whole file's size as this answer states it (None if unknown); restarts ``part`` on a 200."""
    status = resp.status_code
    if status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
        if m is None or int(m[1]) != part.size:
            part.restart()
            raise _Interrupted(f"the server answered a resume request with another range "
                               f"({resp.headers.get('Content-Range')!r}); starting over")
        total = None if m[3] == "*" else int(m[3])
    elif status == 200:
        if part.size:
            print(f"anybind: {url} does not resume downloads (it answered 200 to a range request); "
                  f"starting over", file=sys.stderr)
            part.restart()
        length = resp.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
    elif status == 416 and part.size:
        part.restart()
        raise _Interrupted("the server cannot resume from the bytes kept (HTTP 416); starting over")
    else:
        raise DownloadError(url, f"the server answered HTTP {status} {resp.reason or ''}".rstrip())
    if total is not None and size is not None and total != size:
        part.remove()
        raise ChecksumError(url, "size", f"{size} bytes", f"{total} bytes (as the server announces it)",
                            "the server offers another file than the catalog describes; nothing was cached")
    return size if total is None else total


def _check_space(url: str, target: Path, size: int | None, have: int) -> None:
    """Refuse to start when the disk cannot hold the rest of a file of known size."""
    if size is None:
        return
    free = shutil.disk_usage(target.parent).free
    if free < size - have:
        raise DownloadError(url, f"{target.parent} has {free / 2**30:.1f} GiB free; the file needs "
                                 f"{(size - have) / 2**30:.1f} GiB more (set ANYBIND_HOME to a larger disk)")


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"anybind/{version('anybind')}"
    except PackageNotFoundError:
        return "anybind"


def _expectation(size: int | None, sha256: str | None) -> str:
    parts = ([f"{size} bytes"] if size is not None else []) + ([f"sha256 {sha256}"] if sha256 else [])
    return ", ".join(parts)


def _why_unreachable(exc: Exception) -> str:
    text = str(exc)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "resolve" in low or "name or service" in low or "nodename" in low or "getaddrinfo" in low:
        return "host name could not be resolved (no network?)"
    if "timed out" in low or isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if "unreachable" in low:
        return "network is unreachable"
    return _short(exc)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
