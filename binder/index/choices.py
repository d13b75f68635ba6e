"""The names a search is configured by: search backends and cross-modality mixes, without numpy.

``binder.index.backends`` and ``binder.index.mix`` re-export them; the CLI's ``--backend`` and ``--mix``
options list them when the ``anybind`` command loads, which must stay free of numpy (and torch).
"""
from __future__ import annotations

# ``auto`` uses exact search up to this many rows (one query over 1M x 512 float32 is ~2 GB of
# reads; batched queries stay BLAS-bound) and the default approximate index above it.
AUTO_EXACT_MAX_ROWS = 1_000_000
AUTO_APPROX = "hnsw"

# The one table of backends: name → "module:Class", imported on first use (binder.index.backends).
BACKEND_CLASSES: dict[str, str] = {
    "exact": "binder.index.backends.exact:ExactBackend",
    "flat": "binder.index.backends.faiss:FlatBackend",
    "hnsw": "binder.index.backends.faiss:HNSWBackend",
    "ivfpq": "binder.index.backends.faiss:IVFPQBackend",
}
BACKENDS: tuple[str, ...] = ("auto", *BACKEND_CLASSES)

# How hits of several modalities are ranked together (binder.index.mix says what each does).
MIXES = ("calibrated", "centered", "interleave", "raw")
