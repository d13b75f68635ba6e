"""`--ray`: the index build and `anybind embed` as a Ray Data job on a local Ray give the same
rows and vectors as the single-process paths, and a re-run reuses shards already written.
(Ray is optional for users; the test extra installs it, so these tests never skip.)"""
from __future__ import annotations

import os

import pytest
import ray
import torch
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


def test_actors_take_one_gpu_each_on_a_gpu_cluster_else_one_cpu_each():
    from binder.index.ray_job import actor_resources

    assert actor_resources({"CPU": 32.0, "GPU": 4.0}, 10) == (4, {"num_gpus": 1}, "cuda")  # one model per GPU
    assert actor_resources({"CPU": 32.0, "GPU": 4.0}, 2, {"CPU": 1.0, "GPU": 0.0}) == (2, {"num_gpus": 1}, "cuda")
    assert actor_resources({"CPU": 8.0}, 20) == (8, {"num_cpus": 1}, "cpu")
    assert actor_resources({"CPU": 8.0, "GPU": 0.0}, 20, {"CPU": 3.0}) == (3, {"num_cpus": 1}, "cpu")  # free CPUs
    assert actor_resources({"CPU": 8.0}, 2) == (2, {"num_cpus": 1}, "cpu")
    assert actor_resources({}, 5) == (1, {"num_cpus": 1}, "cpu")


def test_a_gpu_cluster_gets_gpu_actors_that_load_on_cuda(tmp_path, monkeypatch):
    """The job's wiring on a (pretend) cluster of 2 GPUs: each actor asks for a GPU and is told "cuda"."""
    import binder.index.ray_job as ray_job
    from binder.embed.pipeline import EmbedOptions
    from binder.index.ray_job import ShardTask, run_shards

    asked: dict = {}

    class Dataset:
        def map_batches(self, fn, **kwargs):
            asked.update(kwargs, fn=fn)
            return self

        def iter_rows(self):
            return iter([{"shard_id": "r1", "failures": "[]"}])

    class FakeRay:
        class data:  # noqa: N801 (ray.data)
            class DataContext:
                @staticmethod
                def get_current():
                    return type("Context", (), {})()

            @staticmethod
            def from_items(rows):
                asked["rows"] = rows
                return Dataset()

        @staticmethod
        def cluster_resources():
            return {"CPU": 16.0, "GPU": 2.0}

        @staticmethod
        def available_resources():
            return {"CPU": 16.0, "GPU": 2.0}

    monkeypatch.setattr(ray_job, "require_ray", lambda: FakeRay)
    tasks = [ShardTask(f"r{i}", []) for i in range(3)]
    assert list(run_shards(tmp_path, tasks, None, EmbedOptions(progress=False))) == [("r1", [])]
    assert asked["fn"] is ShardEmbedder and asked["num_gpus"] == 1 and "num_cpus" not in asked
    assert asked["concurrency"] == (1, 2) and asked["fn_constructor_kwargs"]["device"] == "cuda"
    assert len(asked["rows"]) == 3


def test_an_actor_loads_its_model_on_its_device_at_auto_precision(tmp_path, monkeypatch):
    import binder.index.ray_job as ray_job
    from binder.device import DeviceError

    cpu = ShardEmbedder(str(tmp_path), None, 4, 1).model
    assert cpu.precision == "fp32" and cpu.input_device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        ShardEmbedder(str(tmp_path), None, 4, 1, device="cuda")
    loads = []
    monkeypatch.setattr(ray_job, "load_model_for", lambda model_dir, **kw: loads.append((model_dir, kw)))
    ShardEmbedder(str(tmp_path), "m", 4, 1, device="cuda")
    assert loads == [("m", {"device": "cuda", "precision": "auto"})]  # auto: half precision on a GPU
