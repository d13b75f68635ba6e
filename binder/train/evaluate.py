"""Zero-shot classification and cross-modal retrieval, the measures of a binding.

Zero-shot: class names are put into prompt templates, encoded by the anchor's text tower and
averaged per class; an item is classified by its nearest class embedding. Retrieval: R@k of a
query set against a gallery, where a hit is a gallery item with the query's label (or, with
``by="pair"``, the query's own paired item).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from binder.embed.classify import class_embeddings
from binder.errors import ConfigError
from binder.model import BindingModel

if TYPE_CHECKING:
    from binder.train.data import PairRecord


def label_indices(labels: Sequence[Any], classes: Sequence[str]) -> torch.Tensor:
    """Integer labels are class indices; string labels are looked up by name."""
    out = []
    for lab in labels:
        if isinstance(lab, (int, np.integer)):
            out.append(int(lab))
        elif lab in classes:
            out.append(list(classes).index(lab))
        else:
            raise ConfigError(f"label {lab!r} is not one of the classes {list(classes)}")
    return torch.tensor(out, dtype=torch.long)


@torch.no_grad()
def embed_tensor(model: BindingModel, name: str, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Embeddings of preprocessed inputs, batched, in inference mode, on the CPU (where the model's
    device may not be: after a GPU run, or with ``--device``)."""
    with torch.inference_mode():
        return torch.cat([model.encode(name, inputs[i:i + batch_size]).cpu()
                          for i in range(0, len(inputs), batch_size)])


def zero_shot_hits(embeddings: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor) -> np.ndarray:
    """Per item: whether nearest-class-prompt classification names its label."""
    pred = (embeddings @ class_emb.T).argmax(dim=1)
    return (pred == labels).numpy()


def zero_shot_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor) -> float:
    """Top-1 accuracy of nearest-class-prompt classification."""
    return float(zero_shot_hits(embeddings, labels, class_emb).mean())


def recall_hits(queries: torch.Tensor, gallery: torch.Tensor, q_keys: Sequence[Any], g_keys: Sequence[Any],
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Per query and k: whether a gallery item of the query's key is among its k nearest."""
    sims = queries @ gallery.T
    order = sims.argsort(dim=1, descending=True)[:, :max(ks)]
    g = np.asarray(list(g_keys), dtype=object)
    q = np.asarray(list(q_keys), dtype=object)
    hits = g[order.numpy()] == q[:, None]
    return {f"R@{k}": hits[:, :k].any(axis=1) for k in ks}


def recall_at_k(queries: torch.Tensor, gallery: torch.Tensor, q_keys: Sequence[Any], g_keys: Sequence[Any],
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k: share of queries with a gallery item of the same key among their k nearest."""
    return {k: float(v.mean()) for k, v in recall_hits(queries, gallery, q_keys, g_keys, ks).items()}


def by_group(values: Sequence[Any], hits: dict[str, np.ndarray]) -> dict[str, dict[str, float | int]]:
    """Each measure of ``hits`` (name -> per-item bools) per distinct group value, with its item count;
    a missing value is the group ``"(none)"``. Keys are strings, so the result is JSON as it stands."""
    keys = np.asarray(["(none)" if v is None else str(v) for v in values], dtype=object)
    out: dict[str, dict[str, float | int]] = {}
    for key in sorted(set(keys.tolist())):
        mask = keys == key
        out[key] = {"items": int(mask.sum()), **{name: float(h[mask].mean()) for name, h in hits.items()}}
    return out


def chance_top1(labels: torch.Tensor, num_classes: int) -> float:
    """Accuracy of always guessing the most frequent class (≥ 1/C), the honest floor."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return float(counts.max() / counts.sum())


def evaluate_manifest(model: BindingModel, manifest: str, root: str | None = None, classes: Sequence[str] = (),
                      templates: Sequence[str] = ("{}",), gallery: str | None = None,
                      by: str = "label", workers: int = 2, names: Sequence[str] = (),
                      perturb: str | None = None, inputs: dict[Any, Any] | None = None,
                      group: str | None = None) -> dict[str, Any]:
    """Zero-shot top-1 (with ``classes``; prompts use ``names`` when given) and R@1/5/10 against a
    gallery manifest of any modality. ``perturb`` (e.g. ``"snr=10,silence=1"``) applies named
    perturbations (binder.train.perturb) to the manifest's items, never to the gallery. ``group``
    names a manifest column (``speaker``, ``condition``, ...): every measure is also reported per
    value of it, under ``by_<group>``, so a mean over mixed conditions does not hide the weak one.

    ``inputs``, a dict the caller keeps, holds each manifest's preprocessed inputs between calls, so
    measuring one model several ways (a multi-stream modality's fused vector and each stream alone)
    decodes each file once."""
    memo: dict[Any, Any] = {} if inputs is None else inputs

    def embed(path: str, spec: str | None = None):
        name, prepared = prepared_manifest(model, path, root, workers, memo, spec)
        return name, embed_tensor(model, name, prepared.inputs), prepared

    if group is not None and not (classes or gallery):
        raise ConfigError("a per-group report needs something to measure: class names or a gallery")
    name, emb, prepared = embed(manifest, perturb)
    out: dict[str, Any] = {"modality": name, "items": len(prepared.records), "failed": len(prepared.failures)}
    if perturb:
        out["perturb"] = perturb
    hits: dict[str, np.ndarray] = {}
    if classes:
        idx = label_indices([r.label for r in prepared.records], classes)
        prompts = class_embeddings(model.anchor, names or classes, templates).cpu()
        hits["zero_shot_top1"] = zero_shot_hits(emb, idx, prompts)
        out["zero_shot_top1"] = float(hits["zero_shot_top1"].mean())
        out["chance_top1"] = chance_top1(idx, len(classes))
    if gallery:
        g_name, g_emb, g_prep = embed(gallery)
        key = (lambda r: r.label) if by == "label" else (lambda r: r.image or r.path)
        g_key = (lambda r: r.label) if by == "label" else (lambda r: r.path)
        recall = recall_hits(emb, g_emb, [key(r) for r in prepared.records], [g_key(r) for r in g_prep.records])
        out[f"to_{g_name}"] = {k: float(v.mean()) for k, v in recall.items()}
        hits.update({f"to_{g_name}_{k}": v for k, v in recall.items()})
    if group is not None:
        out[f"by_{group}"] = by_group(group_values(prepared.records, group, manifest), hits)
    return out


def group_values(records: Sequence[PairRecord], group: str, manifest: str) -> list[Any]:
    """Each record's value of the manifest column ``group``; a column no record has is a typo, an error."""
    from binder.train.data import RECORD_KEYS

    if group in RECORD_KEYS:
        return [getattr(r, group) for r in records]
    if not any(group in r.columns for r in records):
        known = sorted({k for r in records for k in r.columns} | {"label", "image", "text"})
        raise ConfigError(f"{manifest}: no row has a column {group!r} to group by; its columns: {', '.join(known)}")
    return [r.columns.get(group) for r in records]


def prepared_manifest(model: BindingModel, path: str, root: str | None, workers: int, memo: dict[Any, Any],
                      perturb: str | None = None) -> tuple[str, Any]:
    """(modality name, ``PreparedSet``) of a one-modality manifest, ``perturb`` applied, taken from
    ``memo`` (the ``inputs`` of ``evaluate_manifest``) or prepared once into it."""
    if (path, perturb) not in memo:
        memo[path, perturb] = _prepare(model, path, root, workers, perturb)
    return memo[path, perturb]


def _prepare(model: BindingModel, path: str, root: str | None, workers: int, perturb: str | None) -> tuple[str, Any]:
    """(modality name, preprocessed inputs) of a one-modality manifest, ``perturb`` applied."""
    from binder.train.data import prepare_inputs, read_pairs
    from binder.train.perturb import parse_perturbation

    records = read_pairs(path, root)
    names = {r.modality for r in records}
    if len(names) != 1:
        raise ConfigError(f"{path}: one modality per manifest, found {sorted(names)}")
    name = names.pop()
    transform = parse_perturbation(perturb, name) if perturb else None
    return name, prepare_inputs(model.modality(name), records, workers, progress=False, transform=transform)
