"""Streaming training data: every step decodes (or takes from a cache), augments and preprocesses.

The batches of a run are a pure function of (seed, step): ``StepSampler`` yields, for each global
step, the modality of that step and the rows of its batch; ``PairStream`` turns each (modality,
step, row) into one preprocessed tensor, with augmentation drawn from a generator seeded by
``(seed, modality, step, row)``. Worker processes of a torch ``DataLoader`` therefore produce the
same tensors whichever worker runs an item, so a run resumed at step s replays exactly the batches
an unbroken run sees from s on.

Decoded files are kept in a per-process LRU cache under a byte budget (``train.cache_mb``, split
between the workers): a data set larger than the budget streams from disk, one that fits is
decoded once. A modality trained without augmentation caches its preprocessed tensor instead,
which is the old preprocess-once behaviour. A file that fails to decode is remembered as failed,
dropped from every batch it falls in, and reported once by the trainer.
"""
from __future__ import annotations

import functools
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, Sampler

from binder.errors import AugmentationError, ModalityError
from binder.train.data import PairRecord
from modalities.base import Modality

Key = tuple[int, int, int]  # (modality index, global step, row)


def item_rng(seed: int, modality: str, step: int, row: int) -> np.random.Generator:
    """The generator of one item's augmentation: a pure function of (seed, modality, step, row)."""
    return np.random.default_rng([seed, zlib.crc32(modality.encode()), step, row])


def nbytes(obj: Any) -> int:
    """Approximate memory held by a decoded item (arrays, tensors, and tuples/lists/dicts of them)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.Tensor):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, (tuple, list)):
        return sum(nbytes(o) for o in obj) + 64
    if isinstance(obj, dict):
        return sum(nbytes(o) for o in obj.values()) + 64
    size = getattr(obj, "nbytes", None)  # an object that measures itself (modalities.augment.flow.FlowClip)
    return int(size) if isinstance(size, int) else 64


class ByteLRU:
    """A least-recently-used cache bounded by the summed ``nbytes`` of its values."""

    def __init__(self, budget: int):
        self.budget, self.bytes, self.peak, self.evictions = max(0, int(budget)), 0, 0, 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[0]

    def put(self, key: Any, value: Any) -> None:
        size = nbytes(value)
        if size > self.budget:
            return
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        while self.bytes + size > self.budget and self._items:
            _, (_, old) = self._items.popitem(last=False)
            self.bytes -= old
            self.evictions += 1
        self._items[key] = (value, size)
        self.bytes += size
        self.peak = max(self.peak, self.bytes)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class StreamSource:
    """One modality's part of a stream: its modality object, records and augmentation (None = off)."""

    modality: Modality
    records: Sequence[PairRecord]
    augment: Any = None


@dataclass(frozen=True)
class Fault:
    """An item whose augmentation failed on a good file (an AugmentationError in a worker): carried to
    the trainer's process, which stops the run with it, instead of a worker's traceback."""

    path: str
    reason: str


@dataclass
class StreamBatch:
    """The tensors of one step: ``rows`` (into the modality's records) that decoded, and ``failed``;
    ``fault``: the first augmentation fault of the step, if any."""

    source: int
    step: int
    rows: torch.Tensor
    inputs: torch.Tensor | None
    failed: list[tuple[int, str]]
    fault: Fault | None = None

    def pin_memory(self) -> StreamBatch:
        """The DataLoader's ``pin_memory`` hook: the inputs in page-locked memory."""
        inputs = None if self.inputs is None else self.inputs.pin_memory()
        return StreamBatch(self.source, self.step, self.rows, inputs, self.failed, self.fault)


class PairStream(Dataset):
    """Map-style dataset over keys (modality index, step, row) → (key, tensor or failure reason)."""

    def __init__(self, sources: Sequence[StreamSource], seed: int, cache_bytes: int):
        self.sources, self.seed = list(sources), seed
        self.cache = ByteLRU(cache_bytes)
        self._failed: dict[tuple[int, int], str] = {}

    def set_cache_budget(self, budget: int) -> None:
        """Give this process its share of the cache budget (DataLoader workers call it)."""
        self.cache = ByteLRU(budget)

    def __len__(self) -> int:
        return sum(len(s.records) for s in self.sources)

    def __getitem__(self, key: Key) -> tuple[Key, torch.Tensor | str | Fault]:
        m, step, row = key
        src = self.sources[m]
        try:
            return key, self._item(src, m, step, row)
        except ModalityError as exc:
            self._failed[(m, row)] = exc.reason
            return key, exc.reason
        except AugmentationError as exc:
            return key, Fault(exc.path, exc.reason)

    def _item(self, src: StreamSource, m: int, step: int, row: int) -> torch.Tensor:
        if (m, row) in self._failed:
            raise ModalityError(src.records[row].path, self._failed[(m, row)])
        modality, path = src.modality, src.records[row].path
        if src.augment is None:
            cached = self.cache.get((m, row))
            if cached is None:
                cached = modality.prepare(path)
                self.cache.put((m, row), cached)
            return cached
        raw = self.cache.get((m, row))
        if raw is None:
            raw = modality.load_for_training(path, src.augment)
            self.cache.put((m, row), raw)
        rng = item_rng(self.seed, modality.name, step, row)
        out = modality.prepare_augmented(path, raw, rng, src.augment)
        self.cache.put((m, row), raw)  # measured again: a raw item may cache inside it (two-stream flows)
        return out


class StepSampler(Sampler[list[Key]]):
    """For each global step from ``start`` to ``steps``: the keys of that step's batch."""

    def __init__(self, batch_rows: Any, start: int, steps: int):
        self.batch_rows, self.start, self.steps = batch_rows, start, steps

    def __iter__(self) -> Iterator[list[Key]]:
        for step in range(self.start, self.steps):
            m, rows = self.batch_rows(step)
            yield [(m, step, int(r)) for r in rows]

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def collate(items: list[tuple[Key, torch.Tensor | str | Fault]], sources: Sequence[StreamSource]) -> StreamBatch:
    """Stack the good items of one step; list the failed ones with their reasons (a fault: no tensors)."""
    (m, step, _), _ = items[0]
    faults = [x for _, x in items if isinstance(x, Fault)]
    if faults:
        return StreamBatch(m, step, torch.zeros(0, dtype=torch.long), None, [], faults[0])
    good = [(k[2], x) for k, x in items if isinstance(x, torch.Tensor)]
    failed = [(k[2], x) for k, x in items if isinstance(x, str)]
    rows = torch.tensor([r for r, _ in good], dtype=torch.long)
    inputs = sources[m].modality.collate([x for _, x in good]) if good else None
    return StreamBatch(m, step, rows, inputs, failed)


def _worker_init(worker_id: int) -> None:
    """One thread per worker process for torch and for every native pool (numpy's and scipy's
    OpenBLAS, OpenMP): their default of a thread per core, in each worker, oversubscribed the cores
    the model runs on; speech units trained at half the speed."""
    info = torch.utils.data.get_worker_info()
    torch.set_num_threads(1)
    threadpool_limits(1)
    if info is not None:
        ds = info.dataset
        assert isinstance(ds, PairStream)
        ds.set_cache_budget(ds.cache.budget // max(1, info.num_workers))


def stream_loader(dataset: PairStream, sampler: StepSampler, workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``sampler``'s steps; ``workers`` processes (0 = in this process).

    ``pin_memory`` (for a GPU) puts batches in page-locked memory, so copies to the device can
    run while the model computes."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=max(0, workers), pin_memory=pin_memory,
                      collate_fn=functools.partial(collate, sources=dataset.sources),
                      worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=4 if workers else None, persistent_workers=False)
