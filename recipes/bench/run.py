"""Running a benchmark: build its manifest, embed every item, score it, and describe the result.

Embedding goes through ``binder.embed.pipeline.embed_items`` (batched, with a progress bar, memory
bounded by the batch, bad files and non-finite outputs reported and skipped) and scoring through
``binder.train.evaluate`` (prompt ensembling, nearest-class top-1, R@k), the code ``anybind
eval`` uses. Figures are in percent, like the papers'.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binder.anchor import Anchor
from binder.embed.classify import class_embeddings
from binder.embed.pipeline import Failure, Item, embed_items
from binder.errors import AnybindError
from binder.model import BindingModel
from binder.train.data import PairRecord, read_pairs
from binder.train.evaluate import chance_top1, label_indices, recall_at_k, zero_shot_accuracy
from recipes.bench.base import Benchmark, BuiltSet


@dataclass
class Embedded:
    """Embeddings of the files that could be read, row ``rows[path]``, and the files that could not."""

    rows: dict[str, int]
    vectors: torch.Tensor
    failures: list[Failure]


def run_benchmark(model: BindingModel, bench: Benchmark, data_dir: str | os.PathLike, work_dir: str | os.PathLike,
                  batch_size: int = 16, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Build ``bench``'s manifest from ``data_dir`` into ``work_dir``, embed it with ``model`` and score it."""
    model.modality(bench.modality)  # a model without the modality fails here, before any work
    built = bench.build_manifest(data_dir, work_dir, progress=progress)
    records = read_pairs(built.manifest)
    embedded = embed_records(model, bench.modality, records, batch_size, workers, progress)
    if built.task == "zero_shot":
        scores = score_zero_shot(model.anchor, built, records, embedded)
    else:
        scores = score_text_retrieval(model.anchor, records, embedded)
    return describe(bench, built, scores, embedded, Path(data_dir))


def embed_records(model: BindingModel, modality: str, records: Sequence[PairRecord], batch_size: int = 16,
                  workers: int = 2, progress: bool = True) -> Embedded:
    """Embed each distinct file of ``records`` once; an error only when no file at all could be read."""
    paths = list(dict.fromkeys(r.path for r in records))
    failures: list[Failure] = []
    kept: list[str] = []
    chunks: list[np.ndarray] = []
    for batch in embed_items(model, [Item(p, modality) for p in paths], batch_size, workers, progress, failures):
        kept += [i.path for i in batch.items]
        chunks.append(batch.embeddings)
    if not kept:
        first = f", e.g. {failures[0].path}: {failures[0].reason}" if failures else ""
        raise AnybindError(f"none of the {len(paths)} {modality} files could be embedded{first}")
    return Embedded({p: i for i, p in enumerate(kept)}, torch.from_numpy(np.concatenate(chunks)), failures)


def score_zero_shot(anchor: Anchor, built: BuiltSet, records: Sequence[PairRecord],
                    embedded: Embedded) -> dict[str, Any]:
    """Top-1 of nearest-class-prompt classification over the records whose file was embedded."""
    kept = [r for r in records if r.path in embedded.rows]
    vectors = embedded.vectors[[embedded.rows[r.path] for r in kept]]
    labels = label_indices([r.label for r in kept], built.classes)
    prompts = class_embeddings(anchor, built.prompt_names, built.templates).cpu()
    return {"items": len(kept), "value": 100 * zero_shot_accuracy(vectors, labels, prompts),
            "chance": 100 * chance_top1(labels, len(built.classes))}


def score_text_retrieval(anchor: Anchor, records: Sequence[PairRecord], embedded: Embedded) -> dict[str, Any]:
    """R@1/5/10 of each record's text against every embedded file; its own file is the one hit."""
    queries = [r for r in records if r.path in embedded.rows and r.text]
    if not queries:
        raise AnybindError("no text query is left: every file it answers failed to embed")
    recall = recall_at_k(encode_texts(anchor, [str(r.text) for r in queries]), embedded.vectors,
                         [r.path for r in queries], list(embedded.rows))
    return {"items": len(queries), "gallery": len(embedded.rows), "value": 100 * recall["R@1"],
            "recall": {k: 100 * v for k, v in recall.items()}, "chance": 100 / len(embedded.rows)}


@torch.no_grad()
def encode_texts(anchor: Anchor, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N, D) unit vectors of free texts through the anchor's text tower (no template)."""
    with torch.inference_mode():
        return torch.cat([anchor.encode_text(anchor.tokenize(list(texts[i:i + batch_size]))).cpu()
                          for i in range(0, len(texts), batch_size)])


def describe(bench: Benchmark, built: BuiltSet, scores: dict[str, Any], embedded: Embedded,
             data_dir: Path) -> dict[str, Any]:
    """The JSON-ready result: figures, the paper's figure, the protocol, and what was left out."""
    paper = bench.paper
    out: dict[str, Any] = {
        "benchmark": bench.name, "title": bench.title, "data": str(data_dir), "modality": bench.modality,
        "metric": bench.metric, **scores,
        "paper": {"value": paper.value, "model": paper.model, "source": paper.source, "note": paper.note},
        "failed": len(embedded.failures), "skipped": len(built.skipped), "layout": bench.layout,
        "protocol": built.protocol,
    }
    if built.task == "zero_shot":
        out.update(classes=list(built.classes), prompt_names=list(built.prompt_names),
                   templates=list(built.templates))
    out["failures"] = [{"path": f.path, "reason": f.reason} for f in embedded.failures]
    out["skipped_items"] = [{"path": p, "reason": r} for p, r in built.skipped]
    return out


def format_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """A small fixed-width table: data set, items, metric, anybind's figure, the paper's figure."""
    head = ("data set", "items", "metric", "anybind", "paper")
    rows = [(r["title"], str(r["items"]), r["metric"], f"{r['value']:.1f}",
             f"{r['paper']['value']:.1f} ({r['paper']['model']})") for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
