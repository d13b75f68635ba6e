"""Helpers of the index tests: a small mixed corpus, and an index read as {path: (vector, row)}."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from samplegen import MAKERS

from binder.index.build import BuildOptions
from binder.index.store import IndexStore

CORPUS_MODALITIES = ("image", "text", "imu", "depth")
QUIET = BuildOptions(batch_size=4, workers=1, shard_size=3, progress=False)


def make_corpus(folder: Path, per_modality: int = 3, seed0: int = 0,
                modalities: tuple[str, ...] = CORPUS_MODALITIES) -> list[Path]:
    """Small valid files of several modalities in ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [MAKERS[m](folder, seed=s) for m in modalities for s in range(seed0, seed0 + per_modality)]


def state(folder: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """{path: (vector, row metadata)} of the index's current snapshot; fails on duplicate paths."""
    snap = IndexStore.open(folder).snapshot()
    paths = [r["path"] for r in snap.rows]
    assert len(paths) == len(set(paths)), "duplicate rows"
    assert snap.vectors.shape == (len(snap.rows), snap.dim)
    return {r["path"]: (snap.vectors[i], r) for i, r in enumerate(snap.rows)}


def assert_same_index(got: dict, want: dict, atol: float = 1e-5) -> None:
    """Same files, same content hashes, same vectors (to ``atol``)."""
    assert sorted(got) == sorted(want)
    for path, (vec, row) in want.items():
        assert got[path][1]["hash"] == row["hash"], path
        np.testing.assert_allclose(got[path][0], vec, atol=atol, err_msg=path)
