"""No secret in logs, and a token of any characters: tokens are compared as UTF-8 bytes from the
header and the cookie (raw or percent-encoded, as the page writes it), and a ``?token=`` in an
address is redacted from uvicorn's access log (a real server on 127.0.0.1)."""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from serve_helpers import error_of, serving

from binder.serve import ServeConfig, create_app
from binder.serve.logs import redact
from binder.serve.state import TOKEN_COOKIE

TOKEN = "pässwörd-ключ-🔑"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def locked(serve):
    return serve(token=TOKEN)


def test_a_non_ascii_token_works_in_the_header_and_the_cookie(locked):
    header = {"Authorization": b"Bearer " + TOKEN.encode("utf-8")}
    assert locked.get("/info", headers=header).status_code == 200
    assert locked.get("/items/0", headers={"Cookie": f"{TOKEN_COOKIE}={quote(TOKEN)}".encode()}).status_code == 200
    raw_cookie = f"{TOKEN_COOKIE}=".encode() + TOKEN.encode("utf-8")
    assert locked.get("/items/0", headers={"Cookie": raw_cookie}).status_code == 200
    # the same characters sent otherwise are not the token
    error_of(locked.get("/info", headers={"Authorization": b"Bearer " + TOKEN[:5].encode("utf-8")}), 401)
    error_of(locked.get("/info", headers={"Authorization": b"Bearer " + TOKEN.encode("utf-8")[:-1]}), 401)
    error_of(locked.get("/info", headers={"Cookie": f"{TOKEN_COOKIE}={quote(TOKEN[:-1])}".encode()}), 401)


def test_an_ascii_token_with_a_percent_still_works_both_ways(serve):
    client = serve(token="a%41b")
    assert client.get("/info", headers={"Authorization": "Bearer a%41b"}).status_code == 200
    assert client.get("/info", headers={"Cookie": f"{TOKEN_COOKIE}={quote('a%41b')}"}).status_code == 200
    assert client.get("/info", headers={"Cookie": f"{TOKEN_COOKIE}=a%41b"}).status_code == 200


@pytest.mark.parametrize("line, want", [
    ("/?token=s3cret&q=dog", "/?token=[redacted]&q=dog"),
    ("/?q=dog&token=p%C3%A4ss", "/?q=dog&token=[redacted]"),
    ("/items/1?access_token=abc", "/items/1?access_token=[redacted]"),
    ("/?q=token", "/?q=token"),
])
def test_redact(line, want):
    assert redact(line) == want


def test_the_access_log_never_holds_the_token(model, base_index):
    app = create_app(ServeConfig(base_index, token="s3cret-t0ken"), model=model, model_name="tiny-test")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    with serving(app, access_log=True) as (host, port):
        keep = Keep()
        logging.getLogger("uvicorn.access").addHandler(keep)  # after uvicorn set its logging up
        try:
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
                assert http.get("/", params={"token": "s3cret-t0ken", "q": "dog"}).status_code == 200
                assert http.get("/info?token=s3cret-t0ken").status_code == 401  # a query token opens nothing
        finally:
            logging.getLogger("uvicorn.access").removeHandler(keep)
    assert len(lines) == 2, lines
    assert all("s3cret-t0ken" not in line for line in lines), lines
    assert "GET /?token=[redacted]&q=dog" in lines[0]


def test_the_cli_access_log_never_holds_the_token(base_index):
    env = {**os.environ, "ANYBIND_DISABLE_PLUGINS": "1"}
    env.pop("ANYBIND_MODEL", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", str(base_index), "--port", "0",
                             "--token", "s3cret-t0ken"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            match = re.search(r"anybind serve: (http://127\.0\.0\.1:\d+/)", proc.stderr.readline())
            url = match.group(1) if match else None
        assert url, "no URL line"
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(100):
                try:
                    status = http.get("/", params={"token": "s3cret-t0ken"}).status_code
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "GET /?token=[redacted] HTTP/1.1" in out + err
    assert "s3cret-t0ken" not in out + err
