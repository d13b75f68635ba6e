"""A local HTTP file server for the hub tests: Range requests, dropped connections, servers that ignore ranges,
and hand-written answers (HTML pages, lying lengths, gzip, trickles) for the hardening tests."""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CKPT = "imagebind_test.pth"  # the file the server offers
NAME = "ib-test"  # the catalog name the tests give it


class FileServer:
    """Serves ``files`` (name → bytes) on 127.0.0.1 at a free port, recording every request.

    ``drop_after = n`` makes the next answer stop after ``n`` body bytes and close the connection
    (once); ``ignore_range`` answers every request with the whole file (200), as some servers do.
    ``custom[name] = answer`` makes every request for ``name`` call ``answer(handler)``, which writes
    the raw answer itself (``send_raw`` and ``trickle`` help); the connection is closed after it.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.custom: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[dict[str, str | None]] = []
        self.drop_after: int | None = None
        self.ignore_range = False
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that hung up is no test failure
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def ranges(self) -> list[str | None]:
        return [r["range"] for r in self.requests]

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _take_drop(self) -> int | None:
        with self._lock:
            n, self.drop_after = self.drop_after, None
            return n

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append({"path": name, "range": rng})
                if name in server.custom:
                    self.close_connection = True
                    server.custom[name](self)
                    return
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not server.ignore_range:
                    start = int(m[1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                drop = server._take_drop()
                if drop is not None:
                    self.wfile.write(body[:drop])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        return Handler


def send_raw(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes = b"") -> None:
    """Write a whole answer: exactly these headers (no Content-Length unless given), then ``body``."""
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def trickle(handler: BaseHTTPRequestHandler, data: bytes, every: float, chunk: int = 1,
            stop_after: float = 4.0) -> None:
    """Send ``data``, ``chunk`` bytes every ``every`` seconds; stop after ``stop_after`` s or when the client leaves."""
    end = time.monotonic() + stop_after
    try:
        for i in range(0, len(data), chunk):
            if time.monotonic() > end:
                return
            handler.wfile.write(data[i:i + chunk])
            handler.wfile.flush()
            time.sleep(every)
    except OSError:  # the client gave up, as it should
        return


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_catalog(path: Path, entries: dict[str, dict]) -> Path:
    """Write an ``$ANYBIND_MODELS`` TOML file with one ``[models.NAME]`` table per entry."""
    lines = []
    for name, fields in entries.items():
        lines.append(f"[models.{name}]")
        for key, value in fields.items():
            lines.append(f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"')
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def cache_files(home: Path) -> list[str]:
    """Every file and folder under the cache, relative, except lock files."""
    if not home.exists():
        return []
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "locks" not in p.parts)
