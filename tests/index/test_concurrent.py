"""A reader looping over snapshots while a writer adds, replaces, removes and compacts only ever
sees committed states: row count == vector count, no duplicate paths, every vector equal to what
a fresh build gives that file's content, and a generation that never goes back."""
from __future__ import annotations

import threading

import numpy as np
from index_helpers import make_corpus

from binder.index.build import BuildOptions, build_index, compact_index, remove_from_index
from binder.index.store import IndexStore

ONE_ROW_SHARDS = BuildOptions(batch_size=2, workers=1, shard_size=1, progress=False)


class SnapshotChecker(threading.Thread):
    """Opens snapshots in a loop and records every inconsistency it finds."""

    def __init__(self, folder, reference: dict[tuple[str, str], np.ndarray]):
        super().__init__(daemon=True)
        self.folder, self.reference = folder, reference
        self.stop, self.errors, self.generations = threading.Event(), [], []

    def run(self) -> None:
        store = IndexStore.open(self.folder)
        while not self.stop.is_set():
            # alternate a long-lived store (shard cache) with a fresh one per snapshot
            snap = (store if len(self.generations) % 2 else IndexStore.open(self.folder)).snapshot()
            self.check(snap)

    def check(self, snap) -> None:
        if self.generations and snap.generation < self.generations[-1]:
            self.errors.append(f"generation went back {self.generations[-1]} -> {snap.generation}")
        self.generations.append(snap.generation)
        if snap.vectors.shape != (len(snap.rows), snap.dim) or snap.manifest["count"] != len(snap.rows):
            self.errors.append(f"gen {snap.generation}: {snap.vectors.shape} vectors, {len(snap.rows)} rows")
        paths = [r["path"] for r in snap.rows]
        if len(set(paths)) != len(paths):
            self.errors.append(f"gen {snap.generation}: duplicate paths")
        for vec, row in zip(snap.vectors, snap.rows):
            want = self.reference.get((row["path"], row["hash"]))
            if want is None or not np.allclose(vec, want, atol=1e-5):
                self.errors.append(f"gen {snap.generation}: wrong vector for {row['path']}")


def _reference(fresh_state: dict) -> dict[tuple[str, str], np.ndarray]:
    return {(path, row["hash"]): vec for path, (vec, row) in fresh_state.items()}


def test_snapshots_stay_consistent_while_add_rm_and_compact_run(tmp_path, model, fresh):
    src = tmp_path / "src"
    make_corpus(src, per_modality=2)
    reference = _reference(fresh(src))
    build_index(tmp_path / "idx", [src], model=model, options=ONE_ROW_SHARDS)
    make_corpus(src, per_modality=4, seed0=2)
    (src / "caption0.txt").write_text("a caption that changed while readers read\n")
    reference |= _reference(fresh(src))

    reader = SnapshotChecker(tmp_path / "idx", reference)
    reader.start()
    try:
        report = build_index(tmp_path / "idx", [src], model=model, options=ONE_ROW_SHARDS, create=False)
        remove_from_index(tmp_path / "idx", [src / "img0.png"])
        compact_index(tmp_path / "idx", shard_size=5)
        remove_from_index(tmp_path / "idx", [src / "img1.png"])
    finally:
        reader.stop.set()
        reader.join(timeout=60)
    assert (report.added, report.replaced) == (16, 1)
    assert reader.errors == []
    final = IndexStore.open(tmp_path / "idx").snapshot()
    assert len(final) == 22 and reader.generations[-1] <= final.generation
    assert len(set(reader.generations)) >= 5, "the reader should have seen the writer's commits as they came"
