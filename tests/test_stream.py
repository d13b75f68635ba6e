"""Streaming training data: pure per-item augmentation, workers equal to in-process, bounded
cache, bad files reported once and skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from binder.errors import ModalityError
from binder.registry import get_modality
from binder.train.data import read_pairs
from binder.train.recipe import load_recipe
from binder.train.stream import PairStream, StepSampler, StreamSource, nbytes, stream_loader
from binder.train.trainer import Trainer

N = 24


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    d = load_digits()
    rows = []
    for i in range(N):
        img = Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((32, 32))
        img.convert("RGB").save(root / f"{i}.png")
        np.save(root / f"{i}.depth.npy", (1.0 + d.images[i] / 16).astype(np.float32))
        rows.append({"modality": "depth", "path": f"{i}.depth.npy", "image": f"{i}.png", "label": int(d.target[i])})
    (root / "bad.depth.npy").write_bytes(b"\x93NUMPY broken")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = rows[:7] + [{"modality": "depth", "path": "bad.depth.npy", "image": "0.png", "label": 0}] + rows[7:]
    (root / "with_bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    return root


def depth_source(world: Path, augment=True, manifest: str = "train.jsonl") -> StreamSource:
    modality = get_modality("depth")(image_size=32, patch=8)
    return StreamSource(modality, read_pairs(world / manifest), modality.augment_options(augment))


def rows_of(step: int) -> tuple[int, torch.Tensor]:
    return 0, torch.arange(step % 3, N, 3)[:6]


def test_items_are_a_pure_function_of_seed_step_and_row(world):
    src = depth_source(world)
    a, b = PairStream([src], seed=0, cache_bytes=2**20), PairStream([src], seed=0, cache_bytes=0)
    x = a[(0, 3, 5)][1]
    assert torch.equal(x, b[(0, 3, 5)][1]) and torch.equal(x, a[(0, 3, 5)][1])  # cache or not, same tensor
    assert not torch.equal(x, a[(0, 4, 5)][1])  # another step draws another variation
    assert not torch.equal(x, PairStream([src], seed=1, cache_bytes=0)[(0, 3, 5)][1])
    plain = PairStream([depth_source(world, augment=False)], seed=0, cache_bytes=0)[(0, 3, 5)][1]
    assert torch.equal(plain, src.modality.prepare(src.records[5].path))  # augment off = inference preprocessing


def test_worker_processes_give_the_batches_of_one_process(world):
    ds = PairStream([depth_source(world)], seed=0, cache_bytes=2**20)
    one = list(stream_loader(ds, StepSampler(rows_of, 2, 7), workers=0))
    two = list(stream_loader(ds, StepSampler(rows_of, 2, 7), workers=2))
    assert [b.step for b in one] == [b.step for b in two] == [2, 3, 4, 5, 6]
    for x, y in zip(one, two):
        assert torch.equal(x.rows, y.rows) and torch.equal(x.inputs, y.inputs)


def test_the_cache_stays_within_its_budget(world):
    src = depth_source(world)
    item = nbytes(src.modality.load_checked(src.records[0].path))
    ds = PairStream([src], seed=0, cache_bytes=3 * item)
    for batch in stream_loader(ds, StepSampler(rows_of, 0, 12), workers=0):
        assert batch.inputs is not None and len(batch.rows) == 6
        assert ds.cache.bytes <= ds.cache.budget
    assert 0 < ds.cache.peak <= 3 * item and ds.cache.evictions > 0 and len(ds.cache) <= 3


def test_augmented_items_are_decoded_by_load_for_training_once_then_cached(world, monkeypatch):
    src = depth_source(world)
    calls: list[tuple[str, object]] = []
    modality, path = src.modality, src.records[5].path
    default = modality.load_for_training(path, src.augment)  # the base hook: exactly load_checked
    assert all(np.array_equal(a, b) for a, b in zip(default, modality.load_checked(path), strict=True))

    def counting(path, options):
        calls.append((path, options))
        return type(modality).load_checked(modality, path)  # what the default hook does

    monkeypatch.setattr(src.modality, "load_for_training", counting)
    monkeypatch.setattr(src.modality, "load_checked", lambda path: pytest.fail("augmented items load for training"))
    ds = PairStream([src], seed=0, cache_bytes=2**20)
    first, again = ds[(0, 3, 5)][1], ds[(0, 4, 5)][1]
    assert calls == [(path, src.augment)]  # once: the second step takes the cached raw item
    assert first.shape == again.shape == src.modality.input_shape()


def write_recipe(world: Path, out: Path, manifest: str, **train) -> Path:
    settings = {"steps": 8, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 4, "workers": 0, **train}
    lines = ["[anchor]", 'model = "anybind-tiny"', "[train]", f'root = "{world}"', f'out = "{out}"',
             f'cache_dir = "{out}/cache"'] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["[[modality]]", 'name = "depth"', f'train = "{manifest}"', "options = { image_size = 32, patch = 8 }"]
    path = out.parent / f"{out.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_data_set_over_the_cache_budget_trains(world, tmp_path):
    rec = load_recipe(write_recipe(world, tmp_path / "run", "train.jsonl", cache_mb=0.002))  # ~2 KB: 1 item
    trainer = Trainer(rec, progress=False)
    losses = [trainer.train_step(s) for s in range(8)]
    assert all(np.isfinite(losses)) and trainer.data[0].augment is not None


def test_a_bad_file_is_reported_once_and_skipped(world, tmp_path, capsys):
    rec = load_recipe(write_recipe(world, tmp_path / "bad", "with_bad.jsonl", steps=12, workers=1))
    trainer = Trainer(rec, progress=False)
    trainer.run()
    assert trainer.step == 12 and (tmp_path / "bad" / "model" / "model.safetensors").is_file()
    out = capsys.readouterr()
    reports = (out.out + out.err).count(str(world / "bad.depth.npy"))
    assert reports == 1  # 12 steps of 8 over 25 records: the bad row is drawn several times, reported once


class _ThreadCounts(PairStream):
    """Each item: the most threads any native pool (BLAS, OpenMP) and torch would use in this process."""

    def __getitem__(self, key):
        from threadpoolctl import threadpool_info
        pools = max(p["num_threads"] for p in threadpool_info())
        return key, torch.tensor([pools, torch.get_num_threads()], dtype=torch.float32)


def test_worker_processes_run_every_native_thread_pool_on_one_thread(world):
    from threadpoolctl import threadpool_limits
    ds = _ThreadCounts([depth_source(world)], seed=0, cache_bytes=0)
    with threadpool_limits(3):  # what a worker would inherit on a 3-core machine
        batches = list(stream_loader(ds, StepSampler(rows_of, 0, 4), workers=2))
    counts = torch.cat([b.inputs for b in batches])
    assert counts.shape == (24, 2) and counts.max().item() == 1.0


def _faulty_augment(self, raw, rng, options):
    raise ValueError("buffer source array is read-only")  # what a bug inside an augmentation raises


@pytest.mark.parametrize("workers", [0, 1])
def test_a_faulty_augmentation_stops_the_run_naming_a_file_instead_of_dropping_files(world, tmp_path, monkeypatch,
                                                                                      workers):
    from binder.errors import AugmentationError
    monkeypatch.setattr(type(get_modality("depth")(image_size=32, patch=8)), "augment", _faulty_augment)
    rec = load_recipe(write_recipe(world, tmp_path / "faulty", "train.jsonl", workers=workers))
    with pytest.raises(AugmentationError, match=r"\.depth\.npy: training augmentation failed .*read-only") as info:
        Trainer(rec, progress=False).run()
    assert "Traceback" not in str(info.value) and Path(info.value.path).is_file()
    assert not (tmp_path / "faulty" / "model").exists()


def test_an_item_that_fails_without_augmentation_too_is_the_files_fault(world, monkeypatch):
    from binder.errors import AugmentationError
    src = depth_source(world)
    raw = src.modality.load_checked(src.records[0].path)
    monkeypatch.setattr(type(src.modality), "augment", _faulty_augment)
    with pytest.raises(AugmentationError):
        src.modality.prepare_augmented(src.records[0].path, raw, np.random.default_rng(0), src.augment)
    monkeypatch.setattr(type(src.modality), "preprocess", lambda self, raw: torch.zeros(3))  # the file's own shape
    with pytest.raises(ModalityError, match="preprocessed to shape") as info:
        src.modality.prepare_augmented(src.records[0].path, raw, np.random.default_rng(0), src.augment)
    assert not isinstance(info.value, AugmentationError)
