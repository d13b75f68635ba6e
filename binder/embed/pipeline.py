"""Batch embedding of files and folders: discovery, batched encoding, failures reported not fatal.

What ``embed_items`` yields is checked row by row: every embedding is a finite unit vector, and an
item the model turns into NaN/Inf becomes a ``Failure`` naming its file while the rest of its
batch is kept. So no NaN reaches a shard, an index or stdout.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tqdm import tqdm

from binder.embed.feed import BAD_ROW, BatchLimit, Decoded, decode_chunk, encode_halving, stack, wants_pinned
from binder.embed.workers import decode_pool
from binder.errors import ModalityError
from binder.model import NON_FINITE, BindingModel
from binder.registry import modality_for_path


@dataclass(frozen=True)
class EmbedOptions:
    """How files are embedded: modality (or auto), batch size, decode threads, rows per shard."""

    modality: str = "auto"
    batch_size: int = 8
    workers: int = 2
    shard_size: int = 1024
    progress: bool = True


@dataclass(frozen=True)
class Item:
    path: str
    modality: str


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass
class Batch:
    """Embeddings of one batch, row-aligned with its items and the preprocessed input shape."""

    items: list[Item]
    embeddings: np.ndarray
    input_shape: tuple[int, ...]


def discover(paths: Iterable[str | os.PathLike], modality: str = "auto") -> tuple[list[Item], list[Failure]]:
    """Files to embed: folders are walked (sorted, hidden entries skipped), modality by extension.

    In a folder, files of no known modality are skipped; a file named explicitly must be known.
    A symbolic link found in a folder whose target lies outside every path given is skipped as a
    failure that says so (``LINK_OUT``): what is embedded, and what a server of the index may hand
    out, stays inside the folders named. Folders that are links are not walked into (``os.walk``).
    """
    paths = list(paths)
    roots = [os.path.realpath(p) for p in paths]
    items, failures = [], []
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            for f in _walk(root):
                name = modality if modality != "auto" else modality_for_path(f)
                if not name:
                    continue
                outside = link_outside(f, roots)
                if outside is not None:
                    failures.append(Failure(str(f), LINK_OUT.format(target=outside)))
                else:
                    items.append(Item(str(f), name))
        elif root.is_file():
            name = modality if modality != "auto" else modality_for_path(root)
            if name:
                items.append(Item(str(root), name))
            else:
                failures.append(Failure(str(root), "unknown file type; pass --modality"))
        else:
            failures.append(Failure(str(root), "no such file or folder"))
    return items, failures


LINK_OUT = ("skipped: a symbolic link to {target}, outside the folders given "
            "(name the target itself to include it)")


def link_outside(path: str | os.PathLike, roots: list[str]) -> str | None:
    """The real target of ``path`` if it is a symbolic link leading outside every root, else None."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    inside = any(target == r or target.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
    return None if inside else target


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if not fname.startswith("."):
                yield Path(dirpath) / fname


def embed_items(model: BindingModel, items: list[Item], batch_size: int = 8, workers: int = 2,
                progress: bool = True, failures: list[Failure] | None = None) -> Iterator[Batch]:
    """Yield embedded batches, grouped by modality; bad files go to ``failures`` and are skipped.

    Files of the next batch are decoded by ``workers`` threads while the current batch is encoded;
    the same threads stack them into batches by input shape, pinned for a GPU (``binder.embed.feed``).
    Each decode thread runs torch ops on one thread of its own (``binder.embed.workers``). On a
    device out-of-memory error the batch is encoded in halves, and later batches at the size that fitted.
    """
    failures = failures if failures is not None else []
    chunks = _chunks(items, batch_size)
    pin, limit = wants_pinned(model.input_device), BatchLimit()
    bar = tqdm(total=len(items), unit="file", disable=not progress, desc="embedding", dynamic_ncols=True)
    with decode_pool(workers) as pool:
        pending = _submit(model, chunks[0], pool, pin) if chunks else None
        for i, chunk in enumerate(chunks):
            current = pending
            pending = _submit(model, chunks[i + 1], pool, pin) if i + 1 < len(chunks) else None
            # pending is None only past the last chunk, so every chunk has its submission
            yield from _encode_chunk(model, chunk, cast("Future[Decoded] | ModalityError", current), failures, limit)
            bar.update(len(chunk))
    bar.close()


def _chunks(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Batches of one modality each, in order of first appearance."""
    by_modality: dict[str, list[Item]] = {}
    for item in items:
        by_modality.setdefault(item.modality, []).append(item)
    return [group[s:s + batch_size] for group in by_modality.values() for s in range(0, len(group), batch_size)]


def _submit(model: BindingModel, chunk: list[Item], pool: ThreadPoolExecutor,
            pin: bool) -> Future[Decoded] | ModalityError:
    try:
        modality = model.modality(chunk[0].modality)
    except ModalityError as exc:
        return exc
    files = [pool.submit(_prepare, modality, item.path) for item in chunk]
    return pool.submit(decode_chunk, modality, files, pin)


def _encode_chunk(model: BindingModel, chunk: list[Item], decoded: Future[Decoded] | ModalityError,
                  failures: list[Failure], limit: BatchLimit) -> list[Batch]:
    """Encode the decoded items of one chunk, a batch per input shape; bad files and bad output
    rows go to ``failures``."""
    if isinstance(decoded, ModalityError):
        failures.extend(Failure(i.path, decoded.reason) for i in chunk)
        return []
    result = decoded.result()
    failures.extend(Failure(chunk[row].path, reason) for row, reason in result.errors)
    out = []
    for bucket in result.buckets:
        items = [chunk[row] for row in bucket.rows]
        rows = _encode_rows(model, items, bucket.tensors, bucket.batch, failures, limit)
        if rows:
            keep = [i for i, _ in rows]
            out.append(Batch([items[i] for i in keep], np.stack([e for _, e in rows]),
                             tuple(bucket.tensors[0].shape)))
    return out


def _encode_rows(model: BindingModel, items: list[Item], tensors: list[torch.Tensor],
                 batch: torch.Tensor | None, failures: list[Failure],
                 limit: BatchLimit) -> list[tuple[int, np.ndarray]]:
    """(index, embedding) of every item whose output is a finite unit vector.

    The batch is encoded at once (in halves on out-of-memory); if that fails otherwise (an input
    the encoder cannot take), each item is encoded alone so the error lands on the file that caused it.
    """
    name = items[0].modality
    try:
        if batch is None:
            raise ValueError("the decoded files do not stack into one batch")
        rows = encode_halving(lambda b: model.encode_rows(name, b), batch, limit, model.input_device)
    except (RuntimeError, ValueError, IndexError) as exc:
        if len(items) == 1:
            failures.append(Failure(items[0].path, f"cannot encode: {type(exc).__name__}: {exc}"[:500]))
            return []
        out: list[tuple[int, np.ndarray]] = []
        for i, (item, tensor) in enumerate(zip(items, tensors)):
            one = stack(model.modality(name), [tensor], pin=False)
            out += [(i, e) for _, e in _encode_rows(model, [item], [tensor], one, failures, limit)]
        return out
    return _good_rows(items, rows, failures)


def _good_rows(items: list[Item], rows: list[tuple[int, torch.Tensor | str]],
               failures: list[Failure]) -> list[tuple[int, np.ndarray]]:
    """Rows that passed the output check; the others become failures naming their files."""
    out = []
    for i, row in rows:
        if isinstance(row, str):
            failures.append(Failure(items[i].path, NON_FINITE if row == BAD_ROW else row))
        else:
            out.append((i, row.float().cpu().numpy()))
    return out


def _prepare(modality, path: str):
    try:
        return modality.prepare(path)
    except ModalityError as exc:
        return exc
