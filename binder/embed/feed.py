"""Feeding the encoder: decoded files become batches of one input shape, pinned when bound for a
GPU, and a batch the device has no memory for is encoded in halves.

A chunk's files are decoded by the decode pool (``binder.embed.workers``); the same pool then
stacks them into batches, one per input shape in order of first appearance (a modality whose
files give tensors of several shapes gets one full batch per shape instead of one item at a
time), and pins each batch's memory when the model sits on a CUDA device, so that the copy to
the GPU (``BindingModel.encode_rows``) runs without blocking while the next chunk decodes.

A CUDA out-of-memory error halves the batch and tries again, down to one item; ``BatchLimit``
remembers the size that fitted, so later batches are cut to it from the start. Only one item
that does not fit alone is an error, and it names its file.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from binder.errors import ModalityError
from modalities.base import Modality


@dataclass
class Bucket:
    """Decoded items of one input shape: their positions in the chunk, tensors and batch.

    ``batch`` is None when the tensors would not stack (the encoder then meets each alone).
    """

    rows: list[int]
    tensors: list[torch.Tensor]
    batch: torch.Tensor | None


@dataclass
class Decoded:
    """A chunk after decoding: its buckets and the (position, reason) of each file that failed."""

    buckets: list[Bucket] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def decode_chunk(modality: Modality, futures: Sequence[Future], pin: bool) -> Decoded:
    """Wait for a chunk's decoded files and stack them into pinned (``pin``) batches by shape.

    Runs in a decode thread: it is submitted after the chunk's own files, so every future it
    waits for is already running or done.
    """
    out = Decoded()
    shapes: dict[tuple[int, ...], Bucket] = {}
    for row, future in enumerate(futures):
        result = future.result()
        if isinstance(result, ModalityError):
            out.errors.append((row, result.reason))
            continue
        bucket = shapes.setdefault(tuple(result.shape), Bucket([], [], None))
        bucket.rows.append(row)
        bucket.tensors.append(result)
    for bucket in shapes.values():
        bucket.batch = stack(modality, bucket.tensors, pin)
    out.buckets = list(shapes.values())
    return out


def stack(modality: Modality, tensors: list[torch.Tensor], pin: bool) -> torch.Tensor | None:
    """The modality's batch of ``tensors`` (pinned when ``pin``), or None when they do not collate."""
    try:
        batch = modality.collate(tensors)
    except (RuntimeError, ValueError, IndexError):
        return None
    return batch.pin_memory() if pin else batch


def wants_pinned(device: torch.device) -> bool:
    """Whether batches bound for ``device`` should be pinned: only a CUDA copy gains from it."""
    return device.type == "cuda" and torch.cuda.is_available()


class BatchLimit:
    """The largest batch the device has taken since an out-of-memory error (None: no limit yet)."""

    def __init__(self) -> None:
        self.size: int | None = None

    def pieces(self, n: int) -> Iterator[range]:
        """Row ranges covering ``n`` rows, each cut to the limit as it stands when the range is taken
        (a halving inside one piece shortens the next)."""
        start = 0
        while start < n:
            stop = n if self.size is None else min(n, start + self.size)
            yield range(start, stop)
            start = stop

    def halve(self, tried: int) -> int:
        """Record that ``tried`` rows did not fit; returns the new limit (at least 1)."""
        self.size = max(1, tried // 2)
        return self.size


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA's own type, or MPS's message)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "mps" in str(exc).lower())


def release_cached(device: torch.device) -> None:
    """Hand the caching allocator's free blocks back after an out-of-memory error."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


Encode = Callable[[torch.Tensor], tuple[torch.Tensor, list[int]]]


def encode_halving(encode: Encode, batch: torch.Tensor, limit: BatchLimit,
                   device: torch.device) -> list[tuple[int, torch.Tensor | str]]:
    """(row, embedding or reason) for each row of ``batch``, halving on out-of-memory.

    ``encode`` maps a batch to (embeddings, bad rows). A row comes back as its embedding, as
    ``BAD_ROW`` when the encoder's output for it failed the checks, or as the reason it could not
    be encoded (it does not fit in memory alone). Errors other than out-of-memory propagate.
    """
    out: list[tuple[int, torch.Tensor | str]] = []
    for piece in limit.pieces(batch.shape[0]):
        out += _encode_piece(encode, batch, piece, limit, device)
    return out


def _encode_piece(encode: Encode, batch: torch.Tensor, rows: range, limit: BatchLimit,
                  device: torch.device) -> list[tuple[int, torch.Tensor | str]]:
    try:
        z, bad = encode(batch[rows.start:rows.stop])
    except Exception as exc:  # only out-of-memory is handled here; anything else goes up
        if not is_out_of_memory(exc):
            raise
        release_cached(device)
        if len(rows) == 1:
            return [(rows.start, f"does not fit in {device} memory even alone ({type(exc).__name__}); "
                                 f"use a smaller input or --device cpu")]
        limit.halve(len(rows))
        out: list[tuple[int, torch.Tensor | str]] = []
        for piece in limit.pieces(len(rows)):
            out += _encode_piece(encode, batch, range(rows.start + piece.start, rows.start + piece.stop), limit,
                                 device)
        return out
    dropped = set(bad)
    return [(rows.start + i, BAD_ROW if i in dropped else z[i]) for i in range(len(rows))]


BAD_ROW = "bad row"  # marker: the encoder gave this row a non-finite or non-unit embedding
