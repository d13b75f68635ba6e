"""Fixtures of the server tests: a small model of every modality, an index of one file each, and
in-process clients (FastAPI's TestClient; no socket is opened)."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from samplegen import MAKERS, SMALL_OPTIONS
from serve_helpers import QUIET

from binder.config import BindConfig, ModalityConfig
from binder.index.build import build_index
from binder.model import BindingModel
from binder.serve import ServeConfig, create_app


@pytest.fixture(scope="session")
def model() -> BindingModel:
    """The untrained tiny model, holding every built-in modality at small input sizes."""
    mods = tuple(ModalityConfig(name, options=opts) for name, opts in SMALL_OPTIONS.items())
    return BindingModel(BindConfig(modalities=mods)).eval()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """One small valid file of every modality."""
    folder = tmp_path_factory.mktemp("corpus")
    for make in MAKERS.values():
        make(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def base_index(tmp_path_factory, corpus, model) -> Path:
    """An index of ``corpus`` (built once; tests that change an index copy it first)."""
    folder = tmp_path_factory.mktemp("index") / "idx"
    report = build_index(folder, [corpus], model=model, options=QUIET)
    assert not report.failures and report.count == len(MAKERS)
    return folder


@pytest.fixture
def index_copy(tmp_path, base_index) -> Path:
    """A private copy of the base index, free to change."""
    folder = tmp_path / "idx"
    shutil.copytree(base_index, folder)
    return folder


@pytest.fixture
def serve(model, base_index) -> Iterator[Callable[..., TestClient]]:
    """``serve(index=None, **config)``: a started in-process client of a fresh app (closed after)."""
    opened: list[TestClient] = []

    def start(index: Path | None = None, **options) -> TestClient:
        client = TestClient(create_app(ServeConfig(index or base_index, **options), model=model,
                                       model_name="tiny-test"), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(serve) -> TestClient:
    """A client of the base index, batching on, no token."""
    return serve()
