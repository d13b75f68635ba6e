"""Batch embedding of files and folders: discovery, batched encoding, failures reported not fatal."""
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

from binder.embed.workers import decode_pool
from binder.errors import ModalityError
from binder.model import BindingModel
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
    """
    items, failures = [], []
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            for f in _walk(root):
                name = modality if modality != "auto" else modality_for_path(f)
                if name:
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


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if not fname.startswith("."):
                yield Path(dirpath) / fname


def embed_items(model: BindingModel, items: list[Item], batch_size: int = 8, workers: int = 2,
                progress: bool = True, failures: list[Failure] | None = None) -> Iterator[Batch]:
    """Yield embedded batches, grouped by modality; bad files go to ``failures`` and are skipped.

    Files of the next batch are decoded by ``workers`` threads while the current batch is encoded.
    Each decode thread runs torch ops on one thread of its own (``binder.embed.workers``).
    """
    failures = failures if failures is not None else []
    chunks = _chunks(items, batch_size)
    bar = tqdm(total=len(items), unit="file", disable=not progress, desc="embedding", dynamic_ncols=True)
    with decode_pool(workers) as pool:
        pending = _submit(model, chunks[0], pool) if chunks else None
        for i, chunk in enumerate(chunks):
            current = pending
            pending = _submit(model, chunks[i + 1], pool) if i + 1 < len(chunks) else None
            # pending is None only past the last chunk, so every chunk has its submission
            batch = _encode_chunk(model, chunk, cast("list[Future] | ModalityError", current), failures)
            bar.update(len(chunk))
            if batch is not None:
                yield batch
    bar.close()


def _chunks(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Batches of one modality each, in order of first appearance."""
    by_modality: dict[str, list[Item]] = {}
    for item in items:
        by_modality.setdefault(item.modality, []).append(item)
    return [group[s:s + batch_size] for group in by_modality.values() for s in range(0, len(group), batch_size)]


def _submit(model: BindingModel, chunk: list[Item], pool: ThreadPoolExecutor) -> list[Future] | ModalityError:
    try:
        modality = model.modality(chunk[0].modality)
    except ModalityError as exc:
        return exc
    return [pool.submit(_prepare, modality, item.path) for item in chunk]


def _encode_chunk(model: BindingModel, chunk: list[Item], futures: list[Future] | ModalityError,
                  failures: list[Failure]) -> Batch | None:
    if isinstance(futures, ModalityError):
        failures.extend(Failure(i.path, futures.reason) for i in chunk)
        return None
    tensors, good = [], []
    for item, future in zip(chunk, futures):
        result = future.result()
        if isinstance(result, ModalityError):
            failures.append(Failure(item.path, result.reason))
        else:
            tensors.append(result)
            good.append(item)
    if not good:
        return None
    name = chunk[0].modality
    with torch.inference_mode():
        emb = model.encode(name, model.modality(name).collate(tensors))
    return Batch(good, emb.float().cpu().numpy(), tuple(tensors[0].shape))


def _prepare(modality, path: str):
    try:
        return modality.prepare(path)
    except ModalityError as exc:
        return exc
