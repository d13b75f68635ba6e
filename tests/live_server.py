"""A real uvicorn serving an ASGI app in a thread on 127.0.0.1, for tests that need real HTTP
(the API's own server behaviour, the search page in a browser)."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


@contextlib.contextmanager
def serving(app, access_log: bool = False) -> Iterator[tuple[str, int]]:
    """``app`` served by a real uvicorn in a thread on a free port of 127.0.0.1; yields (host, port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info" if access_log else "warning",
                                           access_log=access_log))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextlib.contextmanager
def serving_url(app) -> Iterator[str]:
    """``serving(app)`` as its base URL, ``http://127.0.0.1:PORT``."""
    with serving(app) as (host, port):
        yield f"http://{host}:{port}"
