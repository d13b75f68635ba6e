"""``POST /v1/embeddings`` (OpenAI's request and response) and ``GET /v1/models``.

JSON: ``{"input": str | [str | {"file": "<base64>", "filename": "x.wav"}], "model": str,
"encoding_format": "float" | "base64", "dimensions": int}``. ``model`` is accepted and the response
names the served model; ``dimensions``, when given, must be the model's. Token-id arrays are not
taken. Multipart: ``input`` text fields and ``file`` parts, embedded in the order they come.
Every embedding is a unit vector; ``usage`` counts the text tokens (files count none). A request
of more than ``BULK_INPUTS`` inputs is encoded in the batcher's bulk lane, taking turns with light
requests (``binder.serve.batching``), and like every request within ``--request-timeout``.
"""
from __future__ import annotations

import asyncio
import base64
from contextlib import ExitStack
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from binder.errors import AnybindError
from binder.serve.auth import state_of
from binder.serve.batching import BULK, LIGHT
from binder.serve.bodies import Body, as_int, as_text, b64_upload, check_fields, form_fields, form_upload, request_body
from binder.serve.embedding import embed_text, embed_upload, time_budget
from binder.serve.errors import ServeError, status_of
from binder.serve.state import ServeState
from binder.serve.uploads import Upload

router = APIRouter()
MAX_INPUTS = 2048
BULK_INPUTS = 8  # a request of more inputs than this is heavy: its encodes take turns with light requests
FIELDS = ("input", "model", "encoding_format", "dimensions", "user")
Input = str | Upload


@router.api_route("/v1/models", methods=["GET", "HEAD"])
async def models(request: Request) -> dict[str, Any]:
    """The one served model, as OpenAI lists models."""
    return {"object": "list", "data": [{"id": state_of(request).model_name, "object": "model", "created": 0,
                                        "owned_by": "anybind"}]}


@router.post("/v1/embeddings")
async def embeddings(request: Request, body: Annotated[Body, Depends(request_body)]) -> JSONResponse:
    """Unit embeddings of texts and files, in the order given."""
    state = state_of(request)
    with ExitStack() as stack:
        inputs, options = await _inputs(state, body, stack)
        if options["dimensions"] not in (None, state.model.embed_dim):
            raise ServeError(f"dimensions: this model embeds into {state.model.embed_dim} dimensions "
                             f"(got {options['dimensions']})", kind="invalid_request")
        lane = BULK if len(inputs) > BULK_INPUTS else LIGHT
        async with time_budget(state):
            outcomes = await asyncio.gather(*(_embed(state, x, lane) for x in inputs), return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            raise _named(outcome, i, inputs[i]) if len(inputs) > 1 else outcome
    vectors = [o[0] for o in outcomes if not isinstance(o, BaseException)]
    tokens = sum(o[1] for o in outcomes if not isinstance(o, BaseException))
    data = [{"object": "embedding", "index": i, "embedding": _encoded(v, options["encoding_format"])}
            for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": state.model_name,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def _inputs(state: ServeState, body: Body, stack: ExitStack) -> tuple[list[Input], dict[str, Any]]:
    """The inputs (texts, and uploads registered on ``stack`` for deletion) and the options."""
    if body.data is None:
        assert body.form is not None
        form_fields(body.form, (*FIELDS, "file"))
        items: list[Any] = []
        for key, value in body.form.multi_items():
            if key == "input":
                items.append(as_text(value, f"input[{len(items)}]"))
            elif key == "file":
                items.append(stack.enter_context(await form_upload(state.uploads, value, f"input[{len(items)}]")))
        fields: dict[str, Any] = {k: v for k, v in body.form.items() if k not in ("input", "file")}
    else:
        check_fields(body.data, FIELDS)
        fields = body.data
        items = [_json_input(state, x, f"input[{i}]", stack) for i, x in enumerate(_input_list(body.data))]
    if not items:
        raise ServeError("input is empty: give at least one text or file", kind="invalid_request")
    if len(items) > MAX_INPUTS:
        raise ServeError(f"input holds {len(items)} items, more than {MAX_INPUTS}", kind="invalid_request")
    return items, _options(fields, form=body.data is None)


def _input_list(data: dict[str, Any]) -> list[Any]:
    if "input" not in data:
        raise ServeError("input is missing: give a string, or a list of strings and files", kind="invalid_request")
    raw = data["input"]
    items = raw if isinstance(raw, list) else [raw]
    if items and all(isinstance(x, int) and not isinstance(x, bool) for x in items) or any(
            isinstance(x, list) for x in items):
        raise ServeError("input as token ids is not supported: send text", kind="invalid_request")
    return items


def _json_input(state: ServeState, item: Any, name: str, stack: ExitStack) -> Input:
    if isinstance(item, str):
        return as_text(item, name)
    if isinstance(item, dict):
        return stack.enter_context(b64_upload(state.uploads, item, name))
    raise ServeError(f"{name} must be a string or a file object {{\"file\": \"<base64>\", \"filename\": ...}}, "
                     f"not {type(item).__name__ if item is not None else 'null'}", kind="invalid_request")


def _options(fields: Any, form: bool) -> dict[str, Any]:
    fmt = fields.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ServeError(f"encoding_format must be 'float' or 'base64' (got {str(fmt)[:40]!r})", kind="invalid_request")
    model = fields.get("model")
    if model is not None and not isinstance(model, str):
        raise ServeError("model must be a string", kind="invalid_request")
    dims = fields.get("dimensions")
    return {"encoding_format": fmt,
            "dimensions": None if dims is None else as_int(dims, "dimensions", 1, 1 << 20, form=form)}


async def _embed(state: ServeState, item: Input, lane: str) -> tuple[np.ndarray, int]:
    if isinstance(item, str):
        return await embed_text(state, item, lane)
    return await embed_upload(state, item, lane), 0


def _encoded(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _named(exc: BaseException, i: int, item: Input) -> BaseException:
    """The error of one input of several, its message led by which input it is."""
    if not isinstance(exc, AnybindError):
        return exc
    status, kind = status_of(exc)
    what = f"input[{i}]" if isinstance(item, str) else f"input[{i}] ({item.filename})"
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(item, Upload) and message.startswith(f"{item.filename}: "):
        message = message[len(item.filename) + 2:]
    return ServeError(f"{what}: {message}", status=status, kind=kind)
