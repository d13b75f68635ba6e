"""binder.index.live: a reader that follows its writer, one stat per look until a commit."""
from __future__ import annotations

import json

import pytest
from index_helpers import QUIET, make_corpus

from binder.errors import IndexStoreError
from binder.index.build import build_index
from binder.index.live import LiveIndex


def test_a_commit_is_seen_and_a_damaged_one_keeps_the_last_good_generation(tmp_path, model):
    corpus = make_corpus(tmp_path / "a", per_modality=2)
    build_index(tmp_path / "idx", [tmp_path / "a"], model=model, options=QUIET)
    new, stale = [], []
    live = LiveIndex(tmp_path / "idx", dim=model.embed_dim, on_stale=lambda g, e: stale.append((g, str(e))),
                     on_new=new.append)
    first = live.current()
    assert first.generation >= 1 and len(first.index) == len(corpus) and not live.changed()
    assert live.current() is first  # nothing committed: the same generation, not read again
    assert first.paths == {str(p) for p in corpus}
    more = make_corpus(tmp_path / "b", per_modality=1, seed0=7)
    build_index(tmp_path / "idx", [tmp_path / "b"], model=model, options=QUIET, create=False)
    assert live.changed()
    second = live.current()
    assert second.generation > first.generation and len(second.index) == len(corpus) + len(more) and new == [second]
    manifest = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["generation"] += 1
    data["count"] += 5  # no longer the sum of its live rows: damage
    manifest.write_text(json.dumps(data))
    assert live.current() is second and stale and stale[0][0] == second.generation and "idx" in stale[0][1]


def test_a_reader_of_another_dimension_is_refused(tmp_path, model):
    make_corpus(tmp_path / "a", per_modality=1)
    build_index(tmp_path / "idx", [tmp_path / "a"], model=model, options=QUIET)
    with pytest.raises(IndexStoreError, match=f"holds {model.embed_dim}-d vectors but the model embeds into 7"):
        LiveIndex(tmp_path / "idx", dim=7)
