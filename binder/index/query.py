"""Query expressions: embedding arithmetic over text and files of any modality.

Grammar (one string)::

    query    := [sign] term (op term)*
    op       := whitespace ("+" | "-") whitespace      e.g.  rain.wav + 0.5*street.jpg - night
    term     := [WEIGHT "*"] operand                   WEIGHT: a number such as 2, 0.5, 1e-1
    operand  := "double quoted" | 'single quoted' | bare words
                (optionally prefixed with text: to force text)

An operator needs whitespace on both sides, so ``rain-night.wav`` or ``state-of-the-art`` stay
one operand; quote an operand that must hold `` + `` or `` - ``. An operand that names an existing
file is embedded as that file, with its modality chosen by extension; anything else is text, run
through the anchor's text tower. A bare word that looks like a file of a known type (``x.wav``) but
does not exist is an error rather than silently searched as text; write ``text:x.wav`` for that.
Each term's vector is unit-normalized, the weighted sum is taken, and the result renormalized.

Every failure is a ``QueryError``: whatever the string, ``parse_query`` either returns terms or
raises one (a property test feeds it arbitrary text). Weights must be finite and at most
``MAX_WEIGHT`` in magnitude; the query at most ``MAX_QUERY_CHARS`` long; an operand too long to be
a file name is text, and a folder is refused by name.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binder.errors import AnybindError, QueryError

TEXT_PREFIX = "text:"
MAX_WEIGHT = 1e6  # |weight| of one term; beyond it the weighted sum overflows or one term is all that counts
MAX_QUERY_CHARS = 100_000
_WEIGHT = re.compile(r"\s*([+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)\s*\*\s*")
_OP = re.compile(r"\s+([+-])\s+")
_LEAD_SIGN = re.compile(r"\s*([+-])\s*")


@dataclass(frozen=True)
class Term:
    """One weighted operand: ``kind`` is "file" (with its ``modality``) or "text"."""

    weight: float
    kind: str
    value: str
    modality: str = "text"


def parse_query(expr: str) -> list[Term]:
    """Split ``expr`` into weighted terms and resolve each operand to a file or text."""
    if not isinstance(expr, str) or not expr or not expr.strip():
        raise QueryError("empty query")
    if len(expr) > MAX_QUERY_CHARS:
        raise QueryError(f"query is {len(expr):,} characters long, more than {MAX_QUERY_CHARS:,}")
    if "\x00" in expr:
        raise QueryError("query holds a NUL character")
    terms, pos, sign = [], 0, 1.0
    lead = _LEAD_SIGN.match(expr)
    if lead and lead.group(1) and _starts_term(expr, lead.end()):
        sign, pos = (-1.0 if lead.group(1) == "-" else 1.0), lead.end()
    while True:
        weight, operand, quoted, pos = _read_term(expr, pos)
        terms.append(_resolve(sign * weight, operand, quoted))
        if pos >= len(expr):
            return terms
        op = _OP.match(expr, pos)
        if not op:
            raise QueryError(f"expected ' + ' or ' - ' at position {pos} of {expr!r}")
        sign, pos = (-1.0 if op.group(1) == "-" else 1.0), op.end()


def _starts_term(expr: str, pos: int) -> bool:
    """A leading +/- is a sign only when something follows it."""
    return pos < len(expr) and expr[pos:].strip() != ""


def _read_term(expr: str, pos: int) -> tuple[float, str, bool, int]:
    """(weight, operand text, was quoted, position after the term)."""
    weight = 1.0
    w = _WEIGHT.match(expr, pos)
    if w:
        weight, pos = _weight(w.group(1)), w.end()
    while pos < len(expr) and expr[pos].isspace():
        pos += 1
    prefix = ""
    if expr.startswith(TEXT_PREFIX, pos):
        prefix, pos = TEXT_PREFIX, pos + len(TEXT_PREFIX)
    if pos < len(expr) and expr[pos] in "\"'":
        end = expr.find(expr[pos], pos + 1)
        if end < 0:
            raise QueryError(f"unclosed quote at position {pos} of {expr!r}")
        value, pos = expr[pos + 1:end], end + 1
        after = len(expr[pos:]) - len(expr[pos:].rstrip())
        pos = len(expr) if pos + after == len(expr) else pos
        return weight, prefix + value, True, pos
    op = _OP.search(expr, pos)
    end = op.start() if op else len(expr)
    value = expr[pos:end].strip()
    if not value:
        raise QueryError(f"missing operand at position {pos} of {expr!r}")
    return weight, prefix + value, False, end


def _weight(text: str) -> float:
    """A term weight: a finite number no larger than MAX_WEIGHT in magnitude."""
    return _checked_weight(float(text), text)


def _checked_weight(value: float, shown: str) -> float:
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise QueryError(f"weight {shown} is out of range (at most {MAX_WEIGHT:g} in magnitude)")
    return value


def _is_file(path: Path) -> bool:
    """``path.is_file()``, with a name the OS cannot take (too long, bad bytes) counted as no file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _expanded(operand: str) -> str:
    """``~`` and ``~user`` expanded; a name the OS cannot look up (bad characters) stays as it is."""
    try:
        return os.path.expanduser(operand)
    except (OSError, ValueError):  # "~\ud800": the user database cannot encode the name
        return operand


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _resolve(weight: float, operand: str, quoted: bool) -> Term:
    """Decide whether an operand is a file (and of which modality) or text."""
    from binder.registry import modality_for_path

    if operand.startswith(TEXT_PREFIX):
        text = operand[len(TEXT_PREFIX):].strip()
        if not text:
            raise QueryError("text: needs some text after it")
        return Term(weight, "text", text)
    path = Path(_expanded(operand))
    if _is_dir(path) and (_looks_like_file(operand) or operand in (".", "..", "~")):  # a bare word stays text
        raise QueryError(f"{operand}: is a folder; a query term is a file or text (write text:{operand} "
                         f"to search for these words)")
    if _is_file(path):
        modality = modality_for_path(path)
        if modality is None:
            raise QueryError(f"{operand}: file of unknown type (no modality claims its extension); "
                             f"write text:{operand} to search for these words instead")
        return Term(weight, "file", str(path.resolve()), modality)
    if not quoted and _looks_like_file(operand):
        raise QueryError(f"{operand}: no such file (write text:{operand} to search for it as text)")
    if not operand.strip():
        raise QueryError("empty quoted operand")
    return Term(weight, "text", operand.strip())


def _looks_like_file(operand: str) -> bool:
    """One word ending in an extension some modality claims (``street.jpg``), or a path with '/'."""
    from binder.registry import modality_for_path

    if any(c.isspace() for c in operand):
        return False
    return "/" in operand or modality_for_path(operand) is not None


def query_modalities(terms: list[Term]) -> set[str]:
    """The modalities a model must encode to embed ``terms`` ("text" for text terms)."""
    return {t.modality for t in terms}


def embed_terms(model, terms: list[Term]) -> np.ndarray:
    """The query vector: unit term vectors, weighted-summed, renormalized. Shape (D,)."""
    check_weights(terms)
    return combine_terms(terms, [_embed_term(model, term) for term in terms])


def check_weights(terms: list[Term]) -> None:
    """Refuse a weight that is not finite or beyond ``MAX_WEIGHT`` before anything is embedded."""
    for term in terms:
        _checked_weight(term.weight, str(term.weight))


def combine_terms(terms: list[Term], vectors: list[np.ndarray]) -> np.ndarray:
    """Each term's vector normalized, weighted, summed and renormalized; a term without a finite
    direction, a non-finite sum or terms that cancel out are QueryErrors. Shape (D,)."""
    check_weights(terms)
    total = np.zeros(len(vectors[0]), dtype=np.float64)
    for term, vector in zip(terms, vectors):
        vec = np.asarray(vector, dtype=np.float64)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(vec).all() or norm < 1e-12:
            what = term.value if term.kind == "file" else f"text {term.value!r}"
            raise QueryError(f"{what}: the model gives no finite direction for this term (non-finite output)")
        total += term.weight * vec / norm
    norm = float(np.linalg.norm(total))
    if not math.isfinite(norm):
        raise QueryError("the query's weighted sum is not finite (weights too large)")
    if norm < 1e-6:
        raise QueryError("the query's terms cancel out (their weighted sum is the zero vector)")
    return (total / norm).astype(np.float32)


def _embed_term(model, term: Term) -> np.ndarray:
    import torch

    try:
        if term.kind == "file":
            return model.embed_files(term.modality, [term.value])[0].float().cpu().numpy()
        text = model.modality("text")
        with torch.inference_mode():
            return model.encode("text", text.preprocess(term.value)[None])[0].float().cpu().numpy()
    except QueryError:
        raise
    except AnybindError as exc:
        what = term.value if term.kind == "file" else f"text {term.value!r}"
        reason = getattr(exc, "reason", None) or str(exc)
        raise QueryError(f"{what}: cannot embed this query term ({reason})") from None


def embed_query(model, expr: str) -> np.ndarray:
    """Parse and embed a query expression in one step."""
    return embed_terms(model, parse_query(expr))
