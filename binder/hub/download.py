"""Streamed, resumable, verified downloads into the cache.

Bytes go to ``<target>.part``. A dropped connection, a read stall or a transfer below the minimum
rate is resumed with an HTTP ``Range`` request, in this run (a few attempts) and in the next one
(the ``.part`` file stays); a server that answers a range request with the whole file (200 instead
of 206) is followed from the start. The file is renamed into place only when it passed every
check below; a file that fails one is removed and nothing is kept. A server that cannot be reached
at all is an ``OfflineError`` saying where to put the file by hand.

What is accepted (anything else is a ``DownloadError`` naming the URL and the problem):

- the bytes as the server stores them: anybind asks for ``Accept-Encoding: identity`` and refuses
  an answer compressed anyway (a ``Content-Encoding`` other than identity, a ``Transfer-Encoding``
  other than chunked) from its headers, so nothing is ever decompressed;
- at most ``max_size`` bytes (the catalog entry's bound): a larger announced length is refused
  before the body is read, a longer body is cut off and removed;
- exactly the length the server announced (Content-Length, or the total of a Content-Range, kept
  across resumptions), and the catalog's size and sha256 where the entry has them;
- without a sha256 to check the bytes against, also: an announced length (a body that only ends
  when the connection closes could be cut off without a trace), and no HTML (a Content-Type
  ``text/html`` or ``application/xhtml+xml``, or a body that starts like an HTML page: an error or
  sign-in page served with 200).

Time (``Limits``, from the environment): 15 s to connect; ``$ANYBIND_DOWNLOAD_STALL`` s (60)
without a byte; a rate of at least ``$ANYBIND_DOWNLOAD_MIN_RATE`` bytes/s (16384; 0 for none)
over every ``RATE_WINDOW`` (30 s) of a request; and ``$ANYBIND_DOWNLOAD_TIMEOUT`` s (21600, 6 h)
for the whole download, resumptions included. A socket timeout bounds one read only, so a server
that sends a byte now and then (headers or body) never trips it: a watchdog thread checks the rate
and the total time and shuts the socket of the request in flight down when either fails.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

from binder.hub.catalog import DEFAULT_MAX_SIZE
from binder.hub.checksum import CHUNK, check_digest, check_size
from binder.hub.errors import ChecksumError, DownloadError, HubError, OfflineError
from binder.io import atomic_write_json, fsync_dir, fsync_file

TIMEOUT_ENV = "ANYBIND_DOWNLOAD_TIMEOUT"
MIN_RATE_ENV = "ANYBIND_DOWNLOAD_MIN_RATE"
STALL_ENV = "ANYBIND_DOWNLOAD_STALL"
CONNECT_TIMEOUT = 15.0  # seconds to connect
STALL_TIMEOUT = 60.0  # seconds without a byte while reading
TOTAL_TIMEOUT = 6 * 3600.0  # seconds for a whole download, resumptions included
MIN_RATE = 16 * 1024.0  # bytes/s, averaged over each RATE_WINDOW of a request
RATE_WINDOW = 30.0  # seconds
RETRIES = 5  # resumptions in one run after the connection drops
BACKOFF = 0.5  # seconds before the first resumption; doubled each time, at most 8
READ_SIZE = 2**20  # at most this much per read; a read returns what one receive brought
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)\Z")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_HTML_STARTS = (b"<!doctype html", b"<html")


@dataclass(frozen=True)
class Limits:
    """How long a download may take: seconds to connect, seconds without a byte, seconds in all,
    and the least bytes/s over each ``rate_window`` seconds of a request (0: no minimum)."""

    connect: float = CONNECT_TIMEOUT
    stall: float = STALL_TIMEOUT
    total: float = TOTAL_TIMEOUT
    min_rate: float = MIN_RATE
    rate_window: float = RATE_WINDOW

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, changed by ``$ANYBIND_DOWNLOAD_TIMEOUT``, ``_MIN_RATE`` and ``_STALL`` where set."""
        return cls(connect=CONNECT_TIMEOUT,
                   stall=_env_number(STALL_ENV, STALL_TIMEOUT, "a positive number of seconds"),
                   total=_env_number(TIMEOUT_ENV, TOTAL_TIMEOUT, "a positive number of seconds"),
                   min_rate=_env_number(MIN_RATE_ENV, MIN_RATE, "a number of bytes per second (0: none)", zero=True),
                   rate_window=RATE_WINDOW)


def _env_number(var: str, default: float, what: str, zero: bool = False) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise HubError(f"{var} must be {what}, got {raw!r}")
    return value


class _Unreachable(Exception):
    """No connection could be made (refused, DNS, connect timeout)."""


class _Interrupted(Exception):
    """The transfer stopped part way; what arrived is kept and can be resumed."""


class _OutOfTime(Exception):
    """The download's total time is spent; what arrived is kept for the next run."""


class _Partial:
    """The ``.part`` file, the sha256 of the bytes it holds, and the whole file's length as announced.

    ``announced`` is the length a server stated for the file (Content-Length of a 200, total of a
    Content-Range) since these bytes were started, so that a later answer that states none (a 206
    with total ``*``) is still held to it.
    """

    def __init__(self, path: Path):
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        self.announced: int | None = None
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
        self.announced = None

    def append(self, fh: Any, block: bytes) -> None:
        fh.write(block)
        self.digest.update(block)
        self.size += len(block)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def kept(self) -> str:
        if not self.size:
            return "nothing was received"
        return f"the {self.size} bytes received are kept in {self.path} and the next run resumes from there"


class _Watchdog:
    """Enforces the total time and the minimum rate from a thread of its own.

    The reading thread calls ``begin`` before each request, ``count`` after each read and ``end``
    after the answer; the adapter hands over the socket as the answer is awaited. When the total
    time is spent (``expired``) or a request falls below the minimum rate (``slow`` says how), the
    watchdog shuts that socket down, which ends a blocked read at once.
    """

    def __init__(self, limits: Limits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.total
        self.expired = False
        self.slow: str | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._sock: socket.socket | None = None
        self._active = False
        self._since = 0.0
        self._bytes = 0
        self._thread = threading.Thread(target=self._run, name="anybind-download-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def tripped(self) -> bool:
        return self.expired or self.slow is not None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def begin(self) -> None:
        with self._lock:
            self._active, self._since, self._bytes, self._sock, self.slow = True, time.monotonic(), 0, None, None

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            tripped = self.tripped
        if tripped:  # it fired before the socket was known
            _shut(sock)

    def count(self, n: int) -> None:
        with self._lock:
            self._bytes += n

    def end(self) -> None:
        with self._lock:
            self._active, self._sock = False, None

    def _run(self) -> None:
        tick = max(0.01, min(0.5, self.limits.rate_window / 4))
        while not self._done.wait(tick):
            with self._lock:
                now = time.monotonic()
                if now >= self.deadline:
                    self.expired = True
                elif self._active and self.limits.min_rate > 0 and now - self._since >= self.limits.rate_window:
                    rate = self._bytes / (now - self._since)
                    if rate < self.limits.min_rate:
                        self.slow = (f"the transfer ran at {rate:.0f} B/s over {now - self._since:.1f} s, slower than "
                                     f"the minimum of {self.limits.min_rate:g} B/s (${MIN_RATE_ENV})")
                    else:
                        self._since, self._bytes = now, 0
                sock = self._sock if self.tripped and self._active else None
                if self.tripped:
                    self._active = False
            if sock is not None:
                _shut(sock)
            if self.expired:
                return

    def failure(self) -> Exception:
        if self.expired:
            return _OutOfTime(f"not finished within the time limit of {self.limits.total:g} s (${TIMEOUT_ENV})")
        return _Interrupted(self.slow or "too slow")


def _shut(sock: socket.socket) -> None:
    """End every read blocked on ``sock`` (the plain socket call, also under TLS: no TLS state is touched)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """Hands the socket of each request to the watchdog just before the answer's headers are read."""

    def __init__(self, watch: _Watchdog):
        self._watch = watch
        super().__init__()

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return self._watched(super().get_connection_with_tls_context(*args, **kwargs))

    def _watched(self, pool: Any) -> Any:
        base = pool.ConnectionCls
        if getattr(base, "_anybind_watch", None) is not self._watch:
            watch = self._watch

            def getresponse(conn: Any, *args: Any, **kwargs: Any) -> Any:
                if conn.sock is not None:
                    watch.attach(conn.sock)
                return base.getresponse(conn, *args, **kwargs)

            pool.ConnectionCls = type(base.__name__, (base,), {"getresponse": getresponse, "_anybind_watch": watch})
        return pool


def download(url: str, target: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
             max_size: int = DEFAULT_MAX_SIZE, progress: bool = True, limits: Limits | None = None,
             retries: int | None = None, record: str | os.PathLike | None = None) -> str:
    """Fetch ``url`` to ``target`` (through ``target.part``), check it, return its sha256.

    ``progress`` shows a tqdm bar on stderr. ``size``, ``sha256`` and ``max_size`` are the catalog
    entry's; without ``sha256`` the download must pass the checks of the module docstring and its
    digest is printed as unverified. ``limits`` (default ``Limits.from_env()``) bounds the time and
    ``retries`` (default ``RETRIES``) the resumptions after a dropped connection. ``record``, if
    given, receives the URL, size and sha256 as JSON just before the file is renamed into place.
    """
    limits = Limits.from_env() if limits is None else limits
    retries = RETRIES if retries is None else retries
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _Partial(target.with_name(target.name + ".part"))
    if size is not None and part.size > size:
        part.restart()
    http = requests.Session()
    connected, failures = False, 0
    with _Watchdog(limits) as watch:
        adapter = _WatchedAdapter(watch)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
        try:
            while size is None or part.size < size:
                try:
                    if watch.expired:
                        raise watch.failure()
                    _check_space(url, target, size, part.size)
                    _fetch(http, url, part, size, sha256, max_size, progress, limits, watch)
                    break
                except _Unreachable as exc:
                    if not connected:
                        raise OfflineError(url, str(exc), target, _expectation(size, sha256),
                                           verifiable=sha256 is not None) from None
                    failures, reason = failures + 1, str(exc)
                except _Interrupted as exc:
                    connected, failures, reason = True, failures + 1, str(exc)
                except _OutOfTime as exc:
                    raise DownloadError(url, f"{exc}; {part.kept()}") from None
                if failures > retries:
                    raise DownloadError(url, f"{reason} ({failures} attempts); {part.kept()}")
                pause = min(BACKOFF * 2 ** (failures - 1), 8.0)
                if pause >= watch.left():
                    raise DownloadError(url, f"{reason}, and no time is left to resume within the time limit of "
                                             f"{limits.total:g} s (${TIMEOUT_ENV}); {part.kept()}")
                print(f"anybind: {reason}; resuming at byte {part.size}", file=sys.stderr)
                time.sleep(pause)
        finally:
            http.close()
    note = "the download was removed; nothing was cached"
    try:
        check_size(url, size, part.size, note)
        if sha256 is None:
            _refuse_html_body(url, part)
        actual = part.digest.hexdigest()
        check_digest(url, sha256, actual, note)
    except DownloadError:
        part.remove()
        raise
    if record is not None:
        atomic_write_json(record, {"url": url, "size": part.size, "sha256": actual})
    fsync_file(part.path)
    os.replace(part.path, target)
    fsync_dir(target.parent)
    return actual


def _fetch(http: requests.Session, url: str, part: _Partial, size: int | None, sha256: str | None, max_size: int,
           progress: bool, limits: Limits, watch: _Watchdog) -> None:
    """One request: append the answer to ``part``; return when the file is complete."""
    # Ranges count the file's own bytes, never those of a compressed form.
    headers = {"Accept-Encoding": "identity", "User-Agent": _user_agent()}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
    watch.begin()
    try:
        try:
            resp = http.get(url, headers=headers, stream=True, timeout=(limits.connect, limits.stall))
        except requests.exceptions.SSLError as exc:
            raise DownloadError(url, f"TLS error ({_short(exc)})") from None
        except requests.exceptions.ConnectionError as exc:
            if exc.args and isinstance(exc.args[0], urllib3.exceptions.ProtocolError):  # connected, then dropped
                raise _Interrupted(f"the server closed the connection before answering ({_short(exc)})") from None
            raise _Unreachable(_why_unreachable(exc)) from None  # refused, DNS failure, connect timeout
        except requests.exceptions.Timeout:
            raise _Interrupted(f"no answer within {limits.stall:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise DownloadError(url, _short(exc)) from None
        with resp:
            if watch.tripped:  # headers cut off by the watchdog can parse as a (short) answer
                raise watch.failure()
            total = _expected_total(resp, url, part, size)
            _check_answer(resp, url, part, total, sha256, max_size)
            _read_body(resp, url, part, total, max_size, progress, watch)
    except (_Interrupted, _Unreachable):
        if watch.tripped:
            raise watch.failure() from None
        raise
    finally:
        watch.end()
    if total is not None and part.size == total:
        return  # whole, even if the watchdog tripped after the last byte
    if watch.tripped:  # the body may have ended because the watchdog shut the connection
        raise watch.failure()
    if total is not None and part.size < total:
        raise _Interrupted(f"connection closed after {part.size} of {total} bytes")


def _read_body(resp: requests.Response, url: str, part: _Partial, total: int | None, max_size: int,
               progress: bool, watch: _Watchdog) -> None:
    """Append the body to ``part`` as it arrives, undecoded, one receive at a time (so the watchdog sees it)."""
    from tqdm import tqdm

    raw = resp.raw
    # A short body is detected by counting; urllib3's own check would drop the bytes of the last
    # read that did arrive before the connection closed.
    if hasattr(raw, "enforce_content_length"):
        raw.enforce_content_length = False
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2.3; read() waits for READ_SIZE bytes
    with open(part.path, "ab") as fh, tqdm(total=total, initial=part.size, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=part.path.name[:-len(".part")],
                                           disable=not progress, file=sys.stderr) as bar:
        while not watch.tripped:
            try:
                block = (read1(READ_SIZE, decode_content=False) if read1 is not None
                         else raw.read(READ_SIZE, decode_content=False))
            except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
                raise _Interrupted(f"connection lost after {part.size} bytes ({_short(exc)})") from None
            if not block:
                break
            part.append(fh, block)
            watch.count(len(block))
            bar.update(len(block))
            if part.size > max_size:
                part.remove()
                raise DownloadError(url, f"the server sent more than the entry's bound of {max_size} bytes "
                                         f"(max_size); nothing was cached")
            if total is not None and part.size > total:
                part.remove()
                raise ChecksumError(url, "size", f"{total} bytes", f"more than {total} bytes",
                                    "the server sent more than it announced; nothing was cached")


def _expected_total(resp: requests.Response, url: str, part: _Partial, size: int | None) -> int | None:
    """The whole file's size as announced or known (None if unknown); restarts ``part`` on a 200."""
    status = resp.status_code
    if status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
        if m is None or int(m[1]) != part.size:
            part.restart()
            raise _Interrupted(f"the server answered a resume request with another range "
                               f"({resp.headers.get('Content-Range')!r}); starting over")
        stated = None if m[3] == "*" else int(m[3])
        if stated is not None and part.announced is not None and stated != part.announced:
            part.restart()
            raise _Interrupted(f"the file changed on the server (it was announced as {part.announced} bytes, now "
                               f"{stated}); starting over")
    elif status == 200:
        if part.size:
            print(f"anybind: {url} does not resume downloads (it answered 200 to a range request); "
                  f"starting over", file=sys.stderr)
            part.restart()
        length = resp.headers.get("Content-Length", "").strip()
        stated = int(length) if length.isdigit() else None
    elif status == 416 and part.size:
        part.restart()
        raise _Interrupted("the server cannot resume from the bytes kept (HTTP 416); starting over")
    else:
        raise DownloadError(url, f"the server answered HTTP {status} {resp.reason or ''}".rstrip())
    if stated is not None:
        part.announced = stated
    if part.announced is not None and size is not None and part.announced != size:
        part.remove()
        raise ChecksumError(url, "size", f"{size} bytes", f"{part.announced} bytes (as the server announces it)",
                            "the server offers another file than the catalog describes; nothing was cached")
    return size if part.announced is None else part.announced


def _check_answer(resp: requests.Response, url: str, part: _Partial, total: int | None, sha256: str | None,
                  max_size: int) -> None:
    """Refuse, from its headers, an answer that cannot be the file (nothing of it is kept)."""
    problem = None
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    transfer = [t.strip() for t in resp.headers.get("Transfer-Encoding", "").lower().split(",") if t.strip()]
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if encoding not in ("", "identity"):
        problem = (f"the server sent the file compressed (Content-Encoding: {encoding}) although it was asked for "
                   f"the bytes as they are; a compressed answer is refused, not decompressed without a bound")
    elif any(t not in ("chunked", "identity") for t in transfer):
        problem = (f"the server sent the file compressed (Transfer-Encoding: {', '.join(transfer)}); a compressed "
                   f"answer is refused, not decompressed without a bound")
    elif total is not None and total > max_size:
        problem = f"the server announces {total} bytes, more than the entry's bound of {max_size} bytes (max_size)"
    elif sha256 is None and content_type in _HTML_TYPES:
        problem = (f"the server answered with an HTML page (Content-Type {content_type}), not the file (an error or "
                   f"sign-in page?); the entry has no sha256 to tell a page from the file")
    elif sha256 is None and part.announced is None:
        problem = ("the server did not announce the file's length (no Content-Length), and the entry has no sha256: "
                   "a cut-off transfer could not be told from a whole one (a sha256 in the entry lifts this)")
    if problem is not None:
        part.remove()
        raise DownloadError(url, f"{problem}; nothing was cached")


def _refuse_html_body(url: str, part: _Partial) -> None:
    """Refuse a file that starts like an HTML page, whatever its Content-Type said (entries without a sha256)."""
    with open(part.path, "rb") as fh:
        head = fh.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    start = next((s for s in _HTML_STARTS if head.startswith(s)), None)
    if start is not None:
        raise DownloadError(url, f"the file is an HTML page (it starts with {start.decode()!r}), not the released "
                                 f"file (an error or sign-in page?); nothing was cached")


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
