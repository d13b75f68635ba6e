"""Does a query cross modalities by itself? Raw cosine against each mix of ``binder.index.mix``.

The index is the demo's kind: unseen test files of the world (spoken digits, depth maps, images)
and ten captions, embedded by a model (default ``out/demo/model``). Every item is a query against
all the others; for each query modality and each mix the figures are the share of the top 10 that
is of another modality, and precision@10 of the right digit over all modalities. Beside them, the
best single-modality search (``--modality`` set to the one target modality that reads best).

    python benchmarks/cross_modal.py [--model out/demo/model] [--world out/world] [--per-modality 40]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.embed.pipeline import Item, embed_items  # noqa: E402
from binder.index.mix import MIXES  # noqa: E402
from binder.index.search import EmbeddingIndex  # noqa: E402
from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.data import read_pairs  # noqa: E402

K = 10
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PICKS = (("audio", "audio"), ("depth", "depth"), ("images", "image"))


def world_items(world: Path, per_modality: int, captions: Path) -> tuple[list[Item], dict[str, int]]:
    """The demo's mix: ``per_modality`` evenly spaced test files of each manifest, plus ten captions."""
    items, labels = [], {}
    for manifest, modality in PICKS:
        rows = read_pairs(world / "manifests" / f"{manifest}.test.jsonl", world)
        for rec in rows[::max(1, len(rows) // per_modality)][:per_modality]:
            items.append(Item(rec.path, modality))
            labels[rec.path] = int(rec.label)
    captions.mkdir(parents=True, exist_ok=True)
    for i, word in enumerate(WORDS):
        path = captions / f"caption-{word}.txt"
        path.write_text(f"the digit {word}\n")
        items.append(Item(str(path), "text"))
        labels[str(path)] = i
    return items, labels


def build(model: BindingModel, items: list[Item], labels: dict[str, int]) -> EmbeddingIndex:
    vectors, rows = [], []
    for batch in embed_items(model, items, batch_size=16, progress=False):
        vectors.append(batch.embeddings)
        rows += [{"path": it.path, "modality": it.modality, "label": labels[it.path]} for it in batch.items]
    return EmbeddingIndex(np.concatenate(vectors), rows, "exact")


def measure(index: EmbeddingIndex, mix: str, target: str | None = None) -> dict[str, dict[str, float]]:
    """Per query modality: mean share of other modalities in the top K, and precision@K of the digit."""
    sums: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row, (vector, meta) in enumerate(zip(index.embeddings, index.metadata)):
        hits = [h for h in index.search(vector, K + 1, target, mix) if h.row != row][:K]
        other = sum(h.meta["modality"] != meta["modality"] for h in hits) / K
        right = sum(h.meta["label"] == meta["label"] for h in hits) / K
        sums[meta["modality"]].append((other, right))
    return {m: {"other": float(np.mean([v[0] for v in vals])), "p10": float(np.mean([v[1] for v in vals]))}
            for m, vals in sorted(sums.items())}


def best_single(index: EmbeddingIndex) -> dict[str, dict[str, Any]]:
    """Per query modality: the single target modality whose restricted search reads best."""
    by_target = {t: measure(index, "raw", t) for t in index.modalities() if t != "text"}
    out = {}
    for m in index.modalities():
        target = max(by_target, key=lambda t: by_target[t][m]["p10"])
        out[m] = {"target": target, **by_target[target][m]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "out" / "demo" / "model")
    ap.add_argument("--world", type=Path, default=ROOT / "out" / "world")
    ap.add_argument("--per-modality", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cross_modal.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="anybind-cross-modal-") as tmp:
        items, labels = world_items(args.world, args.per_modality, Path(tmp))
        index = build(BindingModel.load(args.model), items, labels)
    results: dict[str, Any] = {"model": str(args.model), "rows": len(index), "k": K,
                               "mixes": {mix: measure(index, mix) for mix in MIXES},
                               "best_single": best_single(index)}
    atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    print("| query | " + " | ".join(f"{m}: other / p@10" for m in MIXES) + " | best single modality p@10 |")
    print("|---" * (len(MIXES) + 2) + "|")
    for q in index.modalities():
        cells = [f"{results['mixes'][m][q]['other']:.2f} / {results['mixes'][m][q]['p10']:.2f}" for m in MIXES]
        best = results["best_single"][q]
        print(f"| {q} | " + " | ".join(cells) + f" | {best['p10']:.2f} ({best['target']}) |")


if __name__ == "__main__":
    main()
