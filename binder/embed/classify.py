"""Zero-shot classification against text labels: the one home of templates, label embeddings,
label cleaning and the softmax, for ``anybind classify``, ``POST /classify`` and evaluation.

Labels are put into prompt templates and encoded by the anchor's text tower, averaged per label
(CLIP's prompt ensembling); each file is embedded with its own modality and given the label whose
embedding is nearest. Probabilities are a softmax over the cosine scores times the modality's logit
scale (its training temperature).
"""
from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from binder.embed.pipeline import Failure, Item, embed_items
from binder.errors import QueryError

if TYPE_CHECKING:
    from binder.anchor import Anchor

DEFAULT_TEMPLATES = ("{}",)


@torch.no_grad()
def class_embeddings(anchor: Anchor, classes: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(C, D) unit vectors: each class's prompts encoded and averaged (CLIP's prompt ensembling)."""
    rows = []
    for name in classes:
        emb = anchor.encode_text(anchor.tokenize([t.format(name) for t in templates]))
        rows.append(F.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(rows)


@dataclass(frozen=True)
class Prediction:
    """Best labels of one file: (label, cosine score, probability), best first."""

    path: str
    modality: str
    top: list[tuple[str, float, float]]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def score(self) -> float:
        return self.top[0][1]


def clean_labels(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """The labels stripped with empty ones dropped, and those that occur more than once (sorted)."""
    labels = [v.strip() for v in values if v.strip()]
    return labels, sorted({lab for lab in labels if labels.count(lab) > 1})


def parse_labels(text: str) -> list[str]:
    """Comma- or newline-separated labels, stripped, empty ones dropped; duplicates are an error."""
    labels, dupes = clean_labels([p for line in text.splitlines() for p in line.split(",")])
    if not labels:
        raise QueryError("no labels given (use --labels 'cat,dog' or --labels-file)")
    if dupes:
        raise QueryError(f"duplicate labels: {', '.join(dupes)}")
    return labels


def check_templates(templates: Sequence[str]) -> None:
    """QueryError unless every template holds the label's place ``{}`` exactly once and no other
    field: ``{x}``, ``{0}``, ``{}`` twice, ``{:>9}``, ``{!r}`` or unbalanced braces (``{{`` and
    ``}}`` are literal braces)."""
    for t in templates:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(t) if name is not None]
        except ValueError as exc:
            raise QueryError(f"template {t!r}: {exc} (write '{{{{' and '}}}}' for literal braces)") from None
        if not fields:
            raise QueryError(f"template {t!r} has no '{{}}' where the label goes")
        if fields != [("", "", None)]:
            raise QueryError(f"template {t!r}: the label goes in one plain '{{}}', and no other field may be "
                             f"there (such as '{{x}}', '{{0}}' or a second '{{}}'; write '{{{{' and '}}}}' for "
                             f"literal braces)")


def label_embeddings(model, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """(L, D) unit vectors, one per label, from the anchor's text tower with prompt ensembling."""
    check_templates(templates)
    with torch.inference_mode():
        classes = class_embeddings(model.anchor, labels, templates).float().cpu().numpy()
    bad = [labels[i] for i in np.flatnonzero(~np.isfinite(classes).all(axis=1))]
    if bad:
        raise QueryError(f"the model gives non-finite embeddings for labels {bad[:5]}; its text tower is broken")
    return classes


def classify_items(model, items: list[Item], labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                   top: int = 3, batch_size: int = 8, progress: bool = True,
                   failures: list[Failure] | None = None) -> Iterator[Prediction]:
    """Predictions for every good file, in embedding order; bad files go to ``failures``."""
    classes = label_embeddings(model, labels, templates)
    top = max(1, min(top, len(labels)))
    for batch in embed_items(model, items, batch_size, progress=progress, failures=failures):
        scores = batch.embeddings @ classes.T
        probs = softmax(scores * float(model.logit_scale(batch.items[0].modality).detach()))
        for item, s, p in zip(batch.items, scores, probs):
            order = np.argsort(-s, kind="stable")[:top]
            yield Prediction(item.path, item.modality, [(labels[j], float(s[j]), float(p[j])) for j in order])


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, L) scores (already multiplied by the modality's logit scale)."""
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
