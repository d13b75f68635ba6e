"""Feeding the encoder: batches by input shape, pinned memory for a GPU, out-of-memory halving."""
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from samplegen import make_image

from binder.embed import feed
from binder.embed.feed import BatchLimit, decode_chunk, encode_halving
from binder.embed.pipeline import Item, embed_items
from binder.errors import ModalityError
from binder.model import BindingModel


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class _Stacking:
    """A stand-in modality: stacks its items, and records what it was asked to stack."""

    def __init__(self):
        self.calls: list[int] = []

    def collate(self, items):
        self.calls.append(len(items))
        return torch.stack(items)


def test_decoded_files_of_two_shapes_make_two_full_batches():
    tensors = [torch.zeros(3), torch.zeros(5), torch.ones(3), torch.ones(5), torch.full((3,), 2.0)]
    futures = [_done(t) for t in tensors[:2]] + [_done(ModalityError("bad.wav", "empty file"))] + \
        [_done(t) for t in tensors[2:]]
    out = decode_chunk(_Stacking(), futures, pin=False)
    assert out.errors == [(2, "empty file")]
    assert [b.rows for b in out.buckets] == [[0, 3, 5], [1, 4]]
    assert [tuple(b.batch.shape) for b in out.buckets] == [(3, 3), (2, 5)]
    assert torch.equal(out.buckets[0].batch[2], torch.full((3,), 2.0))


def test_batches_are_pinned_only_when_asked(monkeypatch):
    pinned = []

    class Batch(torch.Tensor):
        def pin_memory(self, *args, **kwargs):
            pinned.append(self.shape[0])
            return self

    class Modality(_Stacking):
        def collate(self, items):
            return torch.stack(items).as_subclass(Batch)

    futures = [_done(torch.zeros(2)) for _ in range(3)]
    decode_chunk(Modality(), futures, pin=False)
    assert pinned == []
    decode_chunk(Modality(), futures, pin=True)
    assert pinned == [3]
    assert feed.wants_pinned(torch.device("cpu")) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert feed.wants_pinned(torch.device("cuda:0")) is True


def _fake_oom_encoder(fits: int, calls: list[int]):
    """encode_rows that runs out of memory above ``fits`` rows; the embedding is the row's input."""
    def encode(batch):
        calls.append(batch.shape[0])
        if batch.shape[0] > fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch.shape[0]} rows")
        return torch.nn.functional.normalize(batch, dim=-1), []
    return encode


def test_out_of_memory_halves_the_batch_and_later_batches_start_at_the_size_that_fitted():
    calls: list[int] = []
    limit = BatchLimit()
    batch = torch.randn(8, 4)
    rows = encode_halving(_fake_oom_encoder(2, calls), batch, limit, torch.device("cpu"))
    assert [i for i, _ in rows] == list(range(8))
    assert torch.allclose(torch.stack([z for _, z in rows]), torch.nn.functional.normalize(batch, dim=-1))
    assert calls == [8, 4, 2, 2, 2, 2] and limit.size == 2
    calls.clear()
    encode_halving(_fake_oom_encoder(2, calls), torch.randn(7, 4), limit, torch.device("cpu"))
    assert calls == [2, 2, 2, 1]


def test_only_an_item_that_does_not_fit_alone_is_an_error():
    calls: list[int] = []
    rows = encode_halving(_fake_oom_encoder(0, calls), torch.randn(2, 4), BatchLimit(), torch.device("cpu"))
    assert [r for _, r in rows] == [rows[0][1]] * 2 and "does not fit in cpu memory even alone" in rows[0][1]


def test_other_errors_are_not_taken_for_out_of_memory():
    def encode(batch):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes"):
        encode_halving(encode, torch.randn(4, 4), BatchLimit(), torch.device("cpu"))


def test_embedding_a_folder_through_an_out_of_memory_keeps_every_file(tmp_path, monkeypatch):
    model = BindingModel.default().eval()
    items = [Item(str(make_image(tmp_path, seed=i)), "image") for i in range(5)]
    plain = np.concatenate([b.embeddings for b in embed_items(model, items, batch_size=4, progress=False)])
    real, sizes = model.encode_rows, []

    def tight(name, batch):
        sizes.append(batch.shape[0])
        if batch.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(name, batch)

    monkeypatch.setattr(model, "encode_rows", tight)
    failures: list = []
    batches = list(embed_items(model, items, batch_size=4, progress=False, failures=failures))
    assert failures == []
    assert [i.path for b in batches for i in b.items] == [i.path for i in items]
    np.testing.assert_allclose(np.concatenate([b.embeddings for b in batches]), plain, atol=1e-5)
    assert sizes == [4, 2, 1, 1, 1, 1, 1]  # the second chunk starts at the size that fitted


def test_a_file_too_big_for_the_device_alone_is_a_failure_naming_it(tmp_path, monkeypatch):
    model = BindingModel.default().eval()
    items = [Item(str(make_image(tmp_path, seed=i)), "image") for i in range(3)]

    def never(name, batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(model, "encode_rows", never)
    failures: list = []
    assert list(embed_items(model, items, batch_size=3, progress=False, failures=failures)) == []
    assert [f.path for f in failures] == [i.path for i in items]
    assert all("does not fit" in f.reason for f in failures)
