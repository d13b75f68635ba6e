"""``POST /classify``: zero-shot classification of one uploaded file against text labels.

Multipart: a ``file`` part, ``labels`` ("cat,dog" or one a line), ``template`` fields (repeatable,
``{}`` is the label) and ``top``. JSON: ``{"file": {"file": "<base64>", "filename": "x.wav"},
"labels": [str] | str, "templates": [str], "top": int}``. Labels are embedded as ``anybind
classify`` does (``binder.embed.classify.label_embeddings``: prompt ensembling through the anchor's
text tower), on the model's worker thread; the latest label sets are kept, so a page asking again
with the same labels pays only for the file.
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from binder.embed.classify import DEFAULT_TEMPLATES, clean_labels, label_embeddings, parse_labels, softmax
from binder.serve.auth import state_of
from binder.serve.bodies import Body, as_int, as_text, b64_upload, check_fields, form_fields, form_upload, request_body
from binder.serve.embedding import embed_upload
from binder.serve.errors import ServeError
from binder.serve.state import ServeState

router = APIRouter()
MAX_LABELS = 1000
MAX_TEMPLATES = 64


@router.post("/classify")
async def classify(request: Request, body: Annotated[Body, Depends(request_body)]) -> dict[str, Any]:
    """The file's nearest labels: cosine score and softmax probability at its modality's scale."""
    state = state_of(request)
    if body.data is not None:
        check_fields(body.data, ("file", "labels", "templates", "top"))
        labels, templates, top = _json_options(body.data)
        upload = b64_upload(state.uploads, body.data.get("file"), "file")
    else:
        assert body.form is not None
        form_fields(body.form, ("file", "labels", "template", "top"))
        labels = _labels(body.form.get("labels"))
        templates = _templates(body.form.getlist("template") or None)
        top = as_int(body.form.get("top", 3), "top", 1, MAX_LABELS)
        upload = await form_upload(state.uploads, body.form.get("file"), "file")
    with upload:
        vector, (classes, scale) = await asyncio.gather(embed_upload(state, upload),
                                                        _label_vectors(state, labels, templates, upload.modality))
    scores = classes @ vector
    probs = softmax(scores[None] * scale)[0]
    order = np.argsort(-scores, kind="stable")[:top]
    ranked = [{"label": labels[j], "score": round(float(scores[j]), 6), "prob": round(float(probs[j]), 6)}
              for j in order]
    return {"filename": upload.filename, "modality": upload.modality, "label": ranked[0]["label"],
            "score": ranked[0]["score"], "top": ranked}


def _json_options(data: dict[str, Any]) -> tuple[list[str], tuple[str, ...], int]:
    labels = _labels(data.get("labels"))
    return labels, _templates(data.get("templates")), as_int(data.get("top", 3), "top", 1, MAX_LABELS)


def _labels(value: Any) -> list[str]:
    """Labels from a list of strings, or a comma/newline-separated string; unique and non-empty."""
    if value is None:
        raise ServeError("labels is missing: give a list of labels, or 'cat,dog'", kind="invalid_request")
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ServeError("labels must be strings", kind="invalid_request")
        labels, dupes = clean_labels(value)
        if not labels or dupes:
            raise ServeError(f"duplicate labels: {', '.join(dupes)}" if dupes else "labels is empty",
                             kind="invalid_request")
    else:
        labels = parse_labels(as_text(value, "labels"))
    if len(labels) > MAX_LABELS:
        raise ServeError(f"{len(labels)} labels, more than {MAX_LABELS}", kind="invalid_request")
    for label in labels:
        as_text(label, "label", 1000)
    return labels


def _templates(value: Any) -> tuple[str, ...]:
    if value is None:
        return tuple(DEFAULT_TEMPLATES)
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > MAX_TEMPLATES:
        raise ServeError(f"give 1 to {MAX_TEMPLATES} templates", kind="invalid_request")
    return tuple(as_text(v, "template", 1000) for v in values)


async def _label_vectors(state: ServeState, labels: list[str], templates: tuple[str, ...],
                         modality: str) -> tuple[np.ndarray, float]:
    """(L, D) label vectors and the modality's logit scale, kept for the latest label sets."""
    key = ("classify", tuple(labels), templates, modality)
    cached = state.cache.get(key)
    if cached is not None:
        return cached

    def compute(model: Any) -> tuple[np.ndarray, float]:
        return label_embeddings(model, labels, templates), float(model.logit_scale(modality).detach())

    value = await asyncio.wrap_future(state.batcher.call(compute))
    state.cache.put(key, value)
    return value
