"""`anybind search`'s read path in one process while `anybind index add` commits in another:
every search answers from one committed snapshot (row-aligned, no duplicates, scores that equal
the true cosine of the file's fresh embedding) and the searches see the add's commits arrive."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from index_helpers import QUIET, make_corpus

from binder.index.build import build_index
from binder.index.search import EmbeddingIndex

ROOT = Path(__file__).resolve().parents[2]


def _check(index: EmbeddingIndex, query: np.ndarray, reference: dict[str, np.ndarray]) -> list[str]:
    errors = []
    paths = [m["path"] for m in index.metadata]
    if len(set(paths)) != len(paths) or index.embeddings.shape[0] != len(paths):
        errors.append(f"{index.embeddings.shape[0]} vectors, {len(paths)} rows, {len(set(paths))} paths")
    hits = index.search(query, k=8)
    for hit in hits:
        want = float(reference[hit.meta["path"]] @ query)
        if abs(hit.score - want) > 1e-4:
            errors.append(f"{hit.meta['path']}: score {hit.score} but its embedding gives {want}")
    if [h.score for h in hits] != sorted((h.score for h in hits), reverse=True):
        errors.append("hits out of order")
    return errors


def test_search_in_one_process_while_index_add_runs_in_another(tmp_path, fresh):
    src, idx, log = tmp_path / "src", tmp_path / "idx", tmp_path / "add.log"
    make_corpus(src, per_modality=2, modalities=("depth", "thermal"))
    build_index(idx, [src], options=QUIET)
    make_corpus(src, per_modality=60, modalities=("depth", "thermal"))
    reference = {path: vec for path, (vec, _) in fresh(src).items()}
    query = np.random.default_rng(0).standard_normal(len(next(iter(reference.values())))).astype(np.float32)
    query /= np.linalg.norm(query)

    cmd = [sys.executable, "cli.py", "index", "add", str(idx), str(src), "--shard-size", "4",
           "--batch-size", "4", "--workers", "1", "--log", str(log), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    errors, sizes = [], []
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        index = EmbeddingIndex.open(idx)
        sizes.append(len(index))
        errors += _check(index, query, reference)
    proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    assert errors == []
    assert sizes == sorted(sizes), "a later search saw fewer rows than an earlier one"
    assert len(set(sizes)) >= 3, f"the searches should see the add's commits as they land: {sorted(set(sizes))}"
    final = EmbeddingIndex.open(idx)
    assert len(final) == 120 and _check(final, query, reference) == []
