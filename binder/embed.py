"""Batch embedding of files and folders: discovery, batched encoding, failures reported not fatal."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from binder.errors import ModalityError
from binder.model import BindingModel
from binder.registry import modality_for_path


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
    """Yield embedded batches, grouped by modality; bad files go to ``failures`` and are skipped."""
    failures = failures if failures is not None else []
    by_modality: dict[str, list[Item]] = {}
    for item in items:
        by_modality.setdefault(item.modality, []).append(item)
    bar = tqdm(total=len(items), unit="file", disable=not progress, desc="embedding", dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for name, group in by_modality.items():
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                batch = _embed_chunk(model, name, chunk, pool, failures)
                bar.update(len(chunk))
                if batch is not None:
                    yield batch
    bar.close()


def _embed_chunk(model: BindingModel, name: str, chunk: list[Item], pool: ThreadPoolExecutor,
                 failures: list[Failure]) -> Batch | None:
    try:
        modality = model.modality(name)
    except ModalityError as exc:
        failures.extend(Failure(i.path, exc.reason) for i in chunk)
        return None
    tensors, good = [], []
    for item, result in zip(chunk, pool.map(lambda i: _prepare(modality, i.path), chunk)):
        if isinstance(result, ModalityError):
            failures.append(Failure(item.path, result.reason))
        else:
            tensors.append(result)
            good.append(item)
    if not good:
        return None
    with torch.inference_mode():
        emb = model.encode(name, modality.collate(tensors))
    return Batch(good, emb.float().cpu().numpy(), tuple(tensors[0].shape))


def _prepare(modality, path: str):
    try:
        return modality.prepare(path)
    except ModalityError as exc:
        return exc
