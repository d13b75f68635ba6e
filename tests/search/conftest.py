"""Fixtures of the search tests (helpers to import live in search_helpers.py)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def one_faiss_thread(monkeypatch):
    """faiss (OpenMP) on one thread: small test indexes gain nothing from more, and spinning
    OpenMP threads on a shared machine only slow every test down."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
