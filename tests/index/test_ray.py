"""`--ray`: the index build and `anybind embed` as a Ray Data job on a local Ray give the same
rows and vectors as the single-process paths, and a re-run reuses shards already written.
(Ray is optional for users; the test extra installs it, so these tests never skip.)"""
from __future__ import annotations

import os

import pytest
import ray
from click.testing import CliRunner
from index_helpers import QUIET, assert_same_index, make_corpus, state

from binder.cli import app
from binder.embed.pipeline import discover
from binder.embed.shards import read_shards, shard_names
from binder.index.build import BuildOptions, BuildReport, build_index, plan
from binder.index.ray_job import ShardEmbedder, build_index_ray, plan_shards
from binder.index.writer import IndexWriter

RAY_OPTS = BuildOptions(batch_size=4, workers=1, shard_size=5, progress=False)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_build_equals_the_plain_build_and_reruns_per_shard(tmp_path, model, local_ray):
    src = tmp_path / "src"
    make_corpus(src)
    (src / "broken.txt.png").write_bytes(b"not an image")
    plain = build_index(tmp_path / "plain", [src], model=model, options=QUIET)

    # a shard an interrupted run already wrote, but never committed
    with IndexWriter(tmp_path / "ray", model.embed_dim) as writer:
        tasks = plan_shards(plan(writer, discover([src])[0], BuildReport()), RAY_OPTS.shard_size, None)
    ShardEmbedder(str(tmp_path / "ray"), None, 4, 1).embed_shard(tasks[1].shard_id, tasks[1].files)
    written = os.stat(tmp_path / "ray" / shard_names(tasks[1].shard_id)[0]).st_ino

    done = []
    report = build_index_ray(tmp_path / "ray", [src], "local", options=RAY_OPTS, on_done=done.append)
    assert report.failures == plain.failures and len(report.failures) == 1
    assert report.added == len(done) == plain.added == 12
    got = state(tmp_path / "ray")
    assert_same_index(got, state(tmp_path / "plain"))
    assert {row["shard"] for _, row in got.values()} == {t.shard_id for t in tasks}
    assert os.stat(tmp_path / "ray" / shard_names(tasks[1].shard_id)[0]).st_ino == written  # reused
    assert not list((tmp_path / "ray").glob("failures-*"))


def test_embed_with_ray_writes_the_same_shards_as_embed(tmp_path, local_ray):
    make_corpus(tmp_path / "src", per_modality=2)
    runner = CliRunner()
    plain = runner.invoke(app, ["embed", str(tmp_path / "src"), "--out", str(tmp_path / "plain"), "--quiet"])
    with_ray = runner.invoke(app, ["embed", str(tmp_path / "src"), "--out", str(tmp_path / "ray"), "--quiet",
                                   "--ray", "local", "--batch-size", "3"])
    assert plain.exit_code == 0 and with_ray.exit_code == 0, with_ray.output
    want_vecs, want_meta = read_shards(tmp_path / "plain")
    got_vecs, got_meta = read_shards(tmp_path / "ray")
    want = {m["path"]: v for m, v in zip(want_meta, want_vecs)}
    got = {os.path.relpath(m["path"]): v for m, v in zip(got_meta, got_vecs)}
    assert sorted(got) == sorted(os.path.relpath(p) for p in want) and len(got) == 8
    for path, vec in want.items():
        assert got[os.path.relpath(path)] == pytest.approx(vec, abs=1e-5)


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    import sys

    from binder.errors import AnybindError
    from binder.index.ray_job import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(AnybindError, match=r"pip install 'anybind\[ray\]'"):
        require_ray()
