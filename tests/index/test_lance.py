"""Export to LanceDB: the table holds every live row with its metadata, and a vector search on it
returns the same top results as numpy brute force on the snapshot."""
from __future__ import annotations

import lancedb
import numpy as np
import pytest
from click.testing import CliRunner

from binder.cli import app
from binder.index_build import build_index, remove_from_index
from binder.lance_export import search_lance
from binder.store import IndexStore
from index_helpers import QUIET, make_corpus


def test_lance_export_searches_like_brute_force(tmp_path, model):
    files = make_corpus(tmp_path / "src", per_modality=4)
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    remove_from_index(tmp_path / "idx", files[:2])  # tombstoned rows must not be exported
    result = CliRunner().invoke(app, ["index", "export-lance", str(tmp_path / "idx"), str(tmp_path / "lance"),
                                      "--table", "things"])
    assert result.exit_code == 0, result.output
    snap = IndexStore.open(tmp_path / "idx").snapshot()

    table = lancedb.connect(str(tmp_path / "lance")).open_table("things")
    assert table.count_rows() == len(snap) == 14
    exported = table.to_arrow()
    assert sorted(exported["path"].to_pylist()) == sorted(r["path"] for r in snap.rows)
    assert table.schema.metadata[b"anybind.generation"] == str(snap.generation).encode()

    k = 5
    row_of = {r["path"]: i for i, r in enumerate(snap.rows)}
    for query_row in (0, 7, 13):
        query = snap.vectors[query_row]
        scores = snap.vectors @ query
        hits = search_lance(tmp_path / "lance", query, k=k, table="things")
        # the brute-force top k, allowing files of identical content (equal scores) to swap places
        assert len({h["path"] for h in hits}) == k and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1][:k], atol=1e-5)
        np.testing.assert_allclose([scores[row_of[h["path"]]] for h in hits], [h["score"] for h in hits], atol=1e-5)
    hits = search_lance(tmp_path / "lance", snap.vectors[0], k=3, table="things", modality="text")
    assert [h["modality"] for h in hits] == ["text"] * 3
