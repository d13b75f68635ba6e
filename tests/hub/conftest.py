"""Fixtures for the hub tests: a small ImageBind-format checkpoint, a local server, a private cache and catalog."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hub_helpers import CKPT, NAME, FileServer, sha256, write_catalog
from reference_imagebind import TEST_KWARGS, random_reference

import binder.hub.download as download_module


@pytest.fixture(scope="session")
def ckpt_bytes() -> bytes:
    """The reference ImageBind model at the imagebind-test size, saved as ImageBind ships its weights."""
    buf = io.BytesIO()
    torch.save(random_reference(TEST_KWARGS, seed=5).state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def server(ckpt_bytes):
    srv = FileServer().start()
    srv.files[CKPT] = ckpt_bytes
    yield srv
    srv.stop()


@dataclass
class Hub:
    """The private cache and catalog of one test."""

    home: Path
    catalog: Path
    server: FileServer
    data: bytes

    def entry(self, **overrides) -> dict:
        fields = {"kind": "imagebind", "url": self.server.url(CKPT), "size": len(self.data),
                  "sha256": sha256(self.data), "preset": "imagebind-test",
                  "description": "ImageBind at toy size, served locally", "license": "test"}
        fields.update(overrides)
        return {k: v for k, v in fields.items() if v is not None}

    def write(self, **entries: dict) -> None:
        write_catalog(self.catalog, entries)


@pytest.fixture
def hub(tmp_path, monkeypatch, server, ckpt_bytes) -> Hub:
    """ANYBIND_HOME and ANYBIND_MODELS in tmp_path; one entry, ``ib-test``, served by ``server``."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANYBIND_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANYBIND_MODELS", str(tmp_path / "models.toml"))
    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "1")
    monkeypatch.setattr(download_module, "BACKOFF", 0.0)
    h = Hub(home=tmp_path / "home", catalog=tmp_path / "models.toml", server=server, data=ckpt_bytes)
    h.write(**{NAME: h.entry()})
    return h
