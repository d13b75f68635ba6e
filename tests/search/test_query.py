"""The query grammar: weighted sums of files and text, operators only between spaces, typed errors."""
from __future__ import annotations

import numpy as np
import pytest

from binder.errors import AnybindError, QueryError
from binder.index import query
from binder.index.query import Term, embed_terms, parse_query


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("rain.wav", "street.jpg", "rain-night.wav", "my photo.png", "notes.xyz"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def kinds(terms):
    return [(t.weight, t.kind, t.value if t.kind == "text" else t.value.rsplit("/", 1)[-1], t.modality)
            for t in terms]


def test_issue_example(files):
    assert kinds(parse_query("rain.wav + 0.5*street.jpg - night")) == [
        (1.0, "file", "rain.wav", "audio"), (0.5, "file", "street.jpg", "image"), (-1.0, "text", "night", "text")]


def test_plain_text_and_hyphens_inside_operands(files):
    assert kinds(parse_query("a dog barking in the rain")) == [(1.0, "text", "a dog barking in the rain", "text")]
    assert kinds(parse_query("state-of-the-art + rain-night.wav")) == [
        (1.0, "text", "state-of-the-art", "text"), (1.0, "file", "rain-night.wav", "audio")]


def test_weights_signs_quotes_and_text_prefix(files):
    got = kinds(parse_query("-2*night + 'rock + roll' - 1e-1 * \"my photo.png\" + text:street.jpg"))
    assert got == [(-2.0, "text", "night", "text"), (1.0, "text", "rock + roll", "text"),
                   (-0.1, "file", "my photo.png", "image"), (1.0, "text", "street.jpg", "text")]
    assert kinds(parse_query(".5*sunny")) == [(0.5, "text", "sunny", "text")]


def test_file_operands_become_absolute_paths(files):
    (term,) = parse_query("street.jpg")
    assert term.value == str((files / "street.jpg").resolve())


@pytest.mark.parametrize("expr,match", [
    ("", "empty query"),
    ("   ", "empty query"),
    ("rian.wav + dog", "rian.wav: no such file"),
    ("dog + sub/dir/missing", "no such file"),
    ("notes.xyz", "notes.xyz: file of unknown type"),
    ("'unclosed + dog", "unclosed quote"),
    ("dog + ", "expected ' \\+ ' or ' - '|missing operand"),
    ("text:", "missing operand"),
    ("dog + text:  ", "text: needs some text|missing operand"),
    ("'a'b", "expected"),
])
def test_bad_queries_are_typed_errors(files, expr, match):
    with pytest.raises(QueryError, match=match) as info:
        parse_query(expr)
    assert isinstance(info.value, AnybindError)


class FakeModel:
    embed_dim = 3


VECS = {"a": np.array([2.0, 0, 0]), "b": np.array([0, 0.5, 0]), "c": np.array([1.0, 1.0, 0])}


@pytest.fixture
def fake_embed(monkeypatch):
    monkeypatch.setattr(query, "_embed_term", lambda model, term: VECS[term.value].astype(np.float32))


def test_terms_are_normalized_weighted_and_renormalized(fake_embed):
    v = embed_terms(FakeModel(), [Term(1.0, "text", "a"), Term(0.5, "text", "b"), Term(-1.0, "text", "c")])
    want = np.array([1, 0, 0]) + 0.5 * np.array([0, 1, 0]) - np.array([1, 1, 0]) / np.sqrt(2)
    np.testing.assert_allclose(v, want / np.linalg.norm(want), atol=1e-6)
    assert v.dtype == np.float32


def test_terms_that_cancel_are_an_error(fake_embed):
    with pytest.raises(QueryError, match="cancel"):
        embed_terms(FakeModel(), [Term(1.0, "text", "a"), Term(-2.0, "text", "a"), Term(1.0, "text", "a")])


def test_a_tilde_name_the_os_cannot_encode_is_text():
    """Found by the property test: expanduser raised UnicodeEncodeError for '~' + a lone surrogate."""
    (term,) = parse_query("~\ud800")
    assert term.kind == "text"
