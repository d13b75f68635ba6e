"""Inputs of a request turned into unit vectors: decoding on the decode threads, encoding on the
batcher's worker, awaited from the event loop so one slow file holds up no other request.

Query expressions follow ``binder.index.query`` (the grammar and arithmetic of ``anybind search``)
with one rule of the server's own: a term may name only a file the index holds, so a query reads
no file outside it. A path-like term outside the index gets the same error whether the file
exists or not (``check_terms``); the grammar itself still looks operands up on disk, so whether a
name exists can be told from other answers (an existing file is refused, a missing bare word
searched as text): docs/guides/serving.md says so.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from binder.errors import ModalityError, QueryError
from binder.index.query import Term, check_weights, combine_terms, parse_query
from binder.serve.batching import LIGHT
from binder.serve.errors import ServeError, UnreadableInputError
from binder.serve.state import ServeState
from binder.serve.uploads import Upload

OUTSIDE = ("a query term names a file that is not in this index: a query may name only files the index holds "
           "(by the path /search returns) or text; write text:WORDS to search for words that look like a file")
INLINE_TEXT_CHARS = 2000
INLINE_PARSE_CHARS = 500
_FILE_ERRORS = (": no such file (", ": is a folder;", ": file of unknown type")


@asynccontextmanager
async def time_budget(state: ServeState) -> AsyncIterator[None]:
    """The work inside may take at most ``--request-timeout`` seconds: past that it is cancelled
    (its encodes still waiting are dropped by the worker) and the request answered 503 ``timeout``."""
    seconds = state.config.request_timeout_s
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            yield
    except TimeoutError:
        if not limit.expired():
            raise
        raise ServeError(f"the request needed more than this server's {seconds:g} s per request "
                         f"(--request-timeout); ask for less at once, or try again when it is less busy",
                         status=503, kind="timeout") from None


async def in_decoder(state: ServeState, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on one of the decode threads (each runs torch on one thread)."""
    return await asyncio.wrap_future(state.decoder.submit(fn, *args))


async def encode(state: ServeState, modality: str, tensor: Any, lane: str = LIGHT) -> np.ndarray:
    """The unit vector of one preprocessed item, encoded in a batch with whatever else is waiting
    in its lane (``binder.serve.batching``)."""
    return await asyncio.wrap_future(state.batcher.submit(modality, tensor, lane))


async def embed_text(state: ServeState, text: str, lane: str = LIGHT) -> tuple[np.ndarray, int]:
    """(unit vector, token count) of a text, through the anchor's text tower.

    A short text is tokenized on the event loop (a fraction of a millisecond, less than a thread
    hand-off); a long one on a decode thread.
    """
    tokenize = state.model.modality("text").preprocess
    tokens = tokenize(text) if len(text) <= INLINE_TEXT_CHARS else await in_decoder(state, tokenize, text)
    return await encode(state, "text", tokens, lane), int((tokens != 0).sum())


async def embed_upload(state: ServeState, upload: Upload, lane: str = LIGHT) -> np.ndarray:
    """The unit vector of an uploaded file, decoded by its modality's normal loader."""
    try:
        modality = state.model.modality(upload.modality)
        tensor = await in_decoder(state, modality.prepare, upload.path)
        return await encode(state, upload.modality, tensor, lane)
    except ModalityError as exc:
        raise UnreadableInputError(f"{upload.filename}: {upload.public(exc.reason)}") from None


async def embed_expression(state: ServeState, expr: str, indexed: Collection[str]) -> np.ndarray:
    """The query vector of an expression: its terms embedded concurrently, weighted, renormalized."""
    if len(expr) <= INLINE_PARSE_CHARS:  # a few stat calls: less than a thread hand-off
        terms = parse_checked(expr, indexed)
    else:
        terms = await in_decoder(state, parse_checked, expr, indexed)
    check_weights(terms)  # before any work
    vectors = await asyncio.gather(*(_embed_term(state, t) for t in terms))
    return combine_terms(terms, list(vectors))


def parse_checked(expr: str, indexed: Collection[str]) -> list[Term]:
    """``parse_query``, with every file term checked against the index's paths (``check_terms``)."""
    try:
        terms = parse_query(expr)
    except QueryError as exc:
        if any(marker in str(exc) for marker in _FILE_ERRORS):
            raise QueryError(OUTSIDE) from None
        raise
    return check_terms(terms, indexed)


def check_terms(terms: list[Term], indexed: Collection[str]) -> list[Term]:
    """Refuse file terms outside the index with the message a missing file gets (``OUTSIDE``)."""
    for term in terms:
        if term.kind == "file" and term.value not in indexed:
            raise QueryError(OUTSIDE)
    return terms


async def _embed_term(state: ServeState, term: Term) -> np.ndarray:
    try:
        if term.kind == "text":
            return (await embed_text(state, term.value))[0]
        tensor = await in_decoder(state, state.model.modality(term.modality).prepare, term.value)
        return await encode(state, term.modality, tensor)
    except ModalityError as exc:
        what = term.value if term.kind == "file" else f"text {term.value!r}"
        raise QueryError(f"{what}: cannot embed this query term ({exc.reason})") from None


