"""Helpers of the server tests (a module of its own: test modules import from it)."""
from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
from live_server import serving  # noqa: F401  (the server tests import it from here)

from binder.index.build import BuildOptions

ERROR_KEYS = {"type", "message"}


def b64file(path: Path, name: str | None = None) -> dict[str, str]:
    """A JSON file input: the file's bytes base64-encoded, under ``name`` (default: its own)."""
    return {"file": base64.b64encode(path.read_bytes()).decode(), "filename": name or path.name}


def text_vector(model, text: str) -> np.ndarray:
    """``model.encode`` of one text, as the CLI's query code computes it."""
    with torch.inference_mode():
        tokens = model.modality("text").preprocess(text)[None]
        return model.encode("text", tokens)[0].float().numpy()


def file_vector(model, modality: str, path: Path) -> np.ndarray:
    return model.embed_files(modality, [path])[0].float().numpy()


def error_of(response, status: int, kind: str | None = None) -> str:
    """The error message of a JSON error response, after checking its status, shape and type."""
    assert response.status_code == status, response.text
    body: Any = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    if kind is not None:
        assert body["error"]["type"] == kind, body
    assert "Traceback" not in body["error"]["message"]
    return body["error"]["message"]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition: (name, frozenset of label pairs) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample (None if the exposition has no such sample)."""
    return samples(text).get((name, frozenset(labels.items())))


def find(corpus: Path, modality: str) -> Path:
    """The corpus file of ``modality``."""
    from binder.registry import modality_for_path

    return next(p for p in sorted(corpus.iterdir()) if modality_for_path(p) == modality)


def raw_get(app, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client normalises ``..`` away), straight through ASGI."""
    import anyio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    out: dict[str, Any] = {"body": b"", "received": False}

    async def receive() -> dict[str, Any]:
        if not out["received"]:
            out["received"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()  # a client that stays: a response that waits for its going away ends anyway
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    anyio.run(app, scope, receive, send)
    return out["status"], out["body"]


# Index builds in these tests: small batches, one decode thread, no progress bars.
QUIET = BuildOptions(batch_size=8, workers=1, progress=False)


def raw_http(address: tuple[str, int], data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` as is on a new connection and read the answer until the server closes it."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
