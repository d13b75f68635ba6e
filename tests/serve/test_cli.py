"""``anybind serve`` as a real process on 127.0.0.1: it starts, answers, and stops cleanly on Ctrl-C;
a port that is taken is one error line."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _serve(*args: str) -> subprocess.Popen:
    env = {**os.environ, "ANYBIND_DISABLE_PLUGINS": "1"}
    env.pop("ANYBIND_MODEL", None)
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _url(proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"anybind serve: (http://127\.0\.0\.1:\d+/)", line)
        if match:
            return match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no URL line; exit {proc.poll()}: {proc.stderr.read()}")


def test_serve_answers_on_loopback_and_stops_on_ctrl_c(base_index):
    proc = _serve(str(base_index), "--port", "0", "--quiet", "--token", "t0k")
    try:
        url = _url(proc)
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(100):  # the socket listens at once; the app is ready a moment later
                try:
                    health = http.get("healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert health.json()["status"] == "ok"
            assert http.post("search", json={"query": "x"}).status_code == 401
            r = http.post("search", json={"query": "x", "k": 2}, headers={"Authorization": "Bearer t0k"})
            assert r.status_code == 200 and len(r.json()["results"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_a_taken_port_is_one_error_line(base_index, monkeypatch, capsys):
    from binder.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["anybind", "serve", str(base_index), "--port", str(port), "--quiet"])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"anybind: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_a_folder_that_is_no_index_is_one_error_line(tmp_path, monkeypatch, capsys):
    from binder.cli import main

    monkeypatch.setattr(sys, "argv", ["anybind", "serve", str(tmp_path), "--port", "0", "--quiet"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"anybind: error: {tmp_path}: not an anybind index")
