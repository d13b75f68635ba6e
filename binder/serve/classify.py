"""``POST /classify``: zero-shot classification of one uploaded file against text labels.

Multipart: a ``file`` part, ``labels`` ("cat,dog" or one a line), ``template`` fields (repeatable,
``{}`` is the label) and ``top``. JSON: ``{"file": {"file": "<base64>", "filename": "x.wav"},
"labels": [str] | str, "templates": [str], "top": int}``. Labels are embedded as ``anybind
classify`` does (``binder.embed.classify.label_embeddings``: prompt ensembling through the anchor's
text tower), on the model's worker thread; the latest label sets are kept, so a page asking again
with the same labels pays only for the file.

What one request may cost is bounded: at most ``MAX_LABELS`` labels, ``MAX_TEMPLATES`` templates
and ``--max-classify-prompts`` prompts (labels × templates; more is a 413 before any work), encoded
in chunks that take turns with light requests on the worker, all within ``--request-timeout``.
A template holds the label's place ``{}`` once and no other field (``check_templates``).
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from binder.embed.classify import (
    DEFAULT_TEMPLATES,
    check_templates,
    clean_labels,
    label_embeddings,
    parse_labels,
    softmax,
)
from binder.errors import QueryError
from binder.serve.auth import state_of
from binder.serve.batching import BULK, LIGHT
from binder.serve.bodies import Body, as_int, as_text, b64_upload, check_fields, form_fields, form_upload, request_body
from binder.serve.embedding import embed_upload, time_budget
from binder.serve.errors import ServeError
from binder.serve.state import ServeState

router = APIRouter()
MAX_LABELS = 1000
MAX_TEMPLATES = 64
CHUNK_PROMPTS = 64  # the text-encode batch cap: prompts encoded in one turn of the worker
CHUNK_LABELS = 8  # and at most this many labels (each label is one encode of its templates)


@router.post("/classify")
async def classify(request: Request, body: Annotated[Body, Depends(request_body)]) -> dict[str, Any]:
    """The file's nearest labels: cosine score and softmax probability at its modality's scale."""
    state = state_of(request)
    if body.data is not None:
        check_fields(body.data, ("file", "labels", "templates", "top"))
        labels, templates, top = _json_options(body.data)
        check_cost(labels, templates, state.config.max_classify_prompts)
        upload = b64_upload(state.uploads, body.data.get("file"), "file")
    else:
        assert body.form is not None
        form_fields(body.form, ("file", "labels", "template", "top"))
        labels = _labels(body.form.get("labels"))
        templates = _templates(body.form.getlist("template") or None)
        top = as_int(body.form.get("top", 3), "top", 1, MAX_LABELS, form=True)
        check_cost(labels, templates, state.config.max_classify_prompts)
        upload = await form_upload(state.uploads, body.form.get("file"), "file")
    with upload:
        async with time_budget(state):
            vector, (classes, scale) = await asyncio.gather(
                embed_upload(state, upload), _label_vectors(state, labels, templates, upload.modality))
    scores = classes @ vector
    probs = softmax(scores[None] * scale)[0]
    order = np.argsort(-scores, kind="stable")[:top]
    ranked = [{"label": labels[j], "score": round(float(scores[j]), 6), "prob": round(float(probs[j]), 6)}
              for j in order]
    return {"filename": upload.filename, "modality": upload.modality, "label": ranked[0]["label"],
            "score": ranked[0]["score"], "top": ranked}


def check_cost(labels: list[str], templates: tuple[str, ...], limit: int) -> None:
    """413 when the label set asks for more than ``limit`` text encodes (labels × templates)."""
    prompts = len(labels) * len(templates)
    if prompts > limit:
        raise ServeError(f"{len(labels):,} labels x {len(templates)} templates = {prompts:,} prompts to encode, "
                         f"more than this server takes in one request ({limit:,}, --max-classify-prompts); "
                         f"send fewer labels or templates", status=413, kind="too_many_prompts")


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
    templates = tuple(as_text(v, "template", 1000) for v in values)
    try:
        check_templates(templates)
    except QueryError as exc:
        raise ServeError(str(exc), kind="invalid_template") from None
    return templates


async def _label_vectors(state: ServeState, labels: list[str], templates: tuple[str, ...],
                         modality: str) -> tuple[np.ndarray, float]:
    """(L, D) label vectors and the modality's logit scale, kept for the latest label sets.

    The labels are encoded in chunks of at most ``CHUNK_LABELS`` labels and ``CHUNK_PROMPTS``
    prompts, one chunk at a time: a set larger than one chunk takes the worker's bulk lane, where
    each chunk takes its turn with the light requests waiting (``binder.serve.batching``), and a
    request that runs out of time stops between chunks.
    """
    key = ("classify", tuple(labels), templates, modality)
    cached = state.cache.get(key)
    if cached is not None:
        return cached
    per_chunk = max(1, min(CHUNK_LABELS, CHUNK_PROMPTS // len(templates)))
    lane = LIGHT if len(labels) <= per_chunk else BULK
    parts = []
    for start in range(0, len(labels), per_chunk):
        chunk = labels[start:start + per_chunk]

        def encode_chunk(model: Any, chunk: list[str] = chunk) -> np.ndarray:
            return label_embeddings(model, chunk, templates)

        parts.append(await asyncio.wrap_future(state.batcher.call(encode_chunk, lane)))
    scale = await asyncio.wrap_future(state.batcher.call(lambda model: float(model.logit_scale(modality).detach())))
    value = (np.concatenate(parts), scale)
    state.cache.put(key, value)
    return value
