"""The persistent index: build, add, rm, resume and compaction keep it equal to a fresh build;
snapshots are consistent; one writer at a time; typed errors for folders that are not indexes."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from index_helpers import QUIET, assert_same_index, make_corpus, state

from binder.embed.pipeline import discover
from binder.embed.shards import ShardWriter
from binder.errors import IndexStoreError
from binder.index.build import BuildOptions, build_index, compact_index, file_hash, remove_from_index
from binder.index.store import IndexStore
from binder.index.writer import IndexWriter
from binder.io import temp_name


def test_build_rows_hold_file_state_and_model_embeddings(tmp_path, model):
    files = make_corpus(tmp_path / "src")
    (tmp_path / "src" / "broken.png").write_bytes(b"not a png")
    done = []
    report = build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET, on_done=done.append)

    assert report.added == len(files) == len(done)
    assert [f.path for f in report.failures] == [str(tmp_path / "src" / "broken.png")]
    snap = IndexStore.open(tmp_path / "idx").snapshot()
    assert (snap.model, snap.dim, len(snap)) == (None, model.embed_dim, len(files))
    assert snap.vectors.dtype == np.float32 and snap.vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(snap.vectors, axis=1), 1.0, atol=1e-5)
    assert snap.generation == report.generation == -(-len(files) // QUIET.shard_size)
    for vec, row in zip(snap.vectors, snap.rows):
        st = os.stat(row["path"])
        assert os.path.isabs(row["path"]) and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        assert row["hash"] == file_hash(row["path"])
        with torch.inference_mode():
            want = model.embed_files(row["modality"], [row["path"]])[0].numpy()
        np.testing.assert_allclose(vec, want, atol=1e-5, err_msg=row["path"])
    assert {r["modality"] for r in snap.rows} == {"image", "text", "imu", "depth"}


def test_add_and_rm_keep_the_index_equal_to_a_fresh_build(tmp_path, model, fresh):
    src = tmp_path / "src"
    make_corpus(src, per_modality=2)
    build_index(tmp_path / "idx", [src], model=model, options=QUIET)
    before = state(tmp_path / "idx")

    make_corpus(src, per_modality=2, seed0=2)                   # 8 new files
    changed = src / "caption0.txt"
    changed.write_text("a different caption\n")                 # content changed
    touched = src / "img1.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes
    gone = src / "wrist1.imu.npy"
    report = build_index(tmp_path / "idx", [src], model=model, options=QUIET, create=False)
    assert (report.added, report.replaced, report.unchanged) == (8, 1, 7)
    after_add = state(tmp_path / "idx")
    assert after_add[str(touched)][1]["shard"] == before[str(touched)][1]["shard"]  # not re-embedded

    gone.unlink()
    assert remove_from_index(tmp_path / "idx", missing=True) == 1
    assert remove_from_index(tmp_path / "idx", [src / "caption3.txt", src / "nothing.txt"]) == 1
    (src / "caption3.txt").unlink()
    assert_same_index(state(tmp_path / "idx"), fresh(src))


def test_rm_of_a_folder_removes_every_row_under_it(tmp_path, model):
    make_corpus(tmp_path / "a", per_modality=1)
    make_corpus(tmp_path / "ab", per_modality=1, seed0=5)
    build_index(tmp_path / "idx", [tmp_path / "a", tmp_path / "ab"], model=model, options=QUIET)
    assert remove_from_index(tmp_path / "idx", [tmp_path / "a"]) == 4
    assert {os.path.dirname(p) for p in state(tmp_path / "idx")} == {str(tmp_path / "ab")}


def test_interrupted_build_resumes_to_a_fresh_build(tmp_path, model, fresh):
    src = tmp_path / "src"
    make_corpus(src)
    done = []

    def stop_after_two_shards(path):
        done.append(path)
        if len(done) == 2 * QUIET.shard_size:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "idx", [src], model=model, options=QUIET, on_done=stop_after_two_shards)
    assert sorted(state(tmp_path / "idx")) == sorted(done)
    # debris of a crash in the middle of a commit: a temp file and a shard no manifest lists
    leftover = temp_name(tmp_path / "idx" / "embeddings-000099.npy")
    leftover.write_bytes(b"partial")
    shutil.copy(tmp_path / "idx" / "metadata-000000.jsonl", tmp_path / "idx" / "metadata-000042.jsonl")

    report = build_index(tmp_path / "idx", [src], model=model, options=QUIET)
    assert (report.added, report.unchanged) == (12 - len(done), len(done))
    assert_same_index(state(tmp_path / "idx"), fresh(src))
    assert not leftover.exists()
    assert not (tmp_path / "idx" / "metadata-000042.jsonl").exists()


def test_compaction_drops_tombstones_and_old_files_and_keeps_rows(tmp_path, model):
    files = make_corpus(tmp_path / "src")
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    remove_from_index(tmp_path / "idx", files[::2])
    store = IndexStore.open(tmp_path / "idx")
    old = store.snapshot()
    old_files = {s["embeddings"] for s in old.manifest["shards"]}

    assert compact_index(tmp_path / "idx", shard_size=4) == 2
    new = store.snapshot()  # the same store object: its cache of the dropped shards must not be used
    assert new.generation == old.generation + 1
    assert all(not s["dead"] for s in new.manifest["shards"])
    assert not any((tmp_path / "idx" / name).exists() for name in old_files)
    assert [r["path"] for r in new.rows] == [r["path"] for r in old.rows]
    np.testing.assert_array_equal(new.vectors, old.vectors)


def test_one_writer_at_a_time_readers_never_wait(tmp_path, model):
    make_corpus(tmp_path / "src", per_modality=1)
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    with IndexWriter(tmp_path / "idx", create=False):
        with pytest.raises(IndexStoreError, match="another process is writing"):
            build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
        assert len(IndexStore.open(tmp_path / "idx").snapshot()) == 4
    assert remove_from_index(tmp_path / "idx", [tmp_path / "src"]) == 4  # lock released


def test_another_model_or_dim_is_refused(tmp_path, model):
    make_corpus(tmp_path / "src", per_modality=1)
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    other = tmp_path / "other-model"
    other.mkdir()
    with pytest.raises(IndexStoreError, match="built with model untrained-default"):
        build_index(tmp_path / "idx", [tmp_path / "src"], model=model, model_dir=other, options=QUIET)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["dim"], manifest["shards"], manifest["count"] = 32, [], 0  # a (whole, empty) index of 32-d rows
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="32-d"):
        build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)


def test_folders_that_are_not_indexes_get_a_typed_error_naming_them(tmp_path, model):
    with pytest.raises(IndexStoreError, match=str(tmp_path / "empty")):
        IndexStore.open(tmp_path / "empty")
    with pytest.raises(IndexStoreError, match="not an anybind index"):
        build_index(tmp_path / "empty", [tmp_path], model=model, options=QUIET, create=False)
    embed_out = ShardWriter(tmp_path / "embedded", dim=4)
    embed_out.add(np.eye(4, dtype=np.float32)[:1], [{"path": "x"}])
    embed_out.close()
    with pytest.raises(IndexStoreError, match="anybind embed"):
        IndexStore.open(tmp_path / "embedded")


def test_empty_build_is_an_index_and_items_are_discovered_like_embed(tmp_path, model):
    (tmp_path / "src").mkdir()
    report = build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    snap = IndexStore.open(tmp_path / "idx").snapshot()
    assert (len(snap), snap.vectors.shape, report.generation) == (0, (0, model.embed_dim), 1)
    files = make_corpus(tmp_path / "src", per_modality=1)
    items, _ = discover([tmp_path / "src"])
    report = build_index(tmp_path / "idx", [tmp_path / "src"], model=model,
                         options=BuildOptions(shard_size=100, progress=False), create=False)
    assert report.added == len(items) == len(files) and report.generation == 2
