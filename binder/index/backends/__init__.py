"""Nearest-neighbour search backends behind one name → class table.

``exact`` is numpy only; ``flat``, ``hnsw`` and ``ivfpq`` use faiss-cpu, an optional extra, and are
imported only when asked for. ``auto`` is not a backend but a choice by row count. The names and the
table live in ``binder.index.choices`` (no numpy there: the CLI lists them at load).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

import numpy as np

from binder.index.backends.base import Backend, BackendError, Results, recall_at_k, unit_rows
from binder.index.choices import AUTO_APPROX, AUTO_EXACT_MAX_ROWS, BACKEND_CLASSES, BACKENDS

if TYPE_CHECKING:
    from binder.index.backends.faiss import FaissBackend

__all__ = ["AUTO_APPROX", "AUTO_EXACT_MAX_ROWS", "BACKENDS", "BACKEND_CLASSES", "Backend", "BackendError", "Results",
           "backend_class", "make_backend", "recall_at_k", "resolve_name", "unit_rows"]


def resolve_name(name: str, rows: int) -> str:
    """``auto`` → ``exact`` up to AUTO_EXACT_MAX_ROWS rows, else AUTO_APPROX; others validated."""
    if name not in BACKENDS:
        raise BackendError(f"unknown search backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "exact" if rows <= AUTO_EXACT_MAX_ROWS else AUTO_APPROX
    return name


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name`` (not ``auto``); faiss is imported only for its backends."""
    if name not in BACKEND_CLASSES:
        raise BackendError(f"unknown search backend {name!r}; choose one of {', '.join(BACKEND_CLASSES)}")
    module, cls = BACKEND_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, vectors: np.ndarray, progress: bool = False, **params) -> Backend:
    """The backend called ``name`` (``auto`` picks by row count) built over ``vectors``."""
    cls = backend_class(resolve_name(name, len(vectors)))
    if cls.name == "exact":
        return cls(vectors)
    return cast("type[FaissBackend]", cls)(vectors, progress=progress, **params)  # every other backend is faiss's
