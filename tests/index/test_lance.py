"""Export to LanceDB: the table holds every live row with its metadata, and a vector search on it
returns the same top results as numpy brute force on the snapshot."""
from __future__ import annotations

import json

import lancedb
import numpy as np
import pytest
from click.testing import CliRunner
from index_helpers import QUIET, make_corpus

from binder.cli import app
from binder.errors import IndexStoreError
from binder.index.build import build_index, remove_from_index
from binder.index.lance import search_lance
from binder.index.store import IndexStore


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


def _jsonl(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_search_cli_reads_a_lance_export_like_the_index(tmp_path, model):
    make_corpus(tmp_path / "src", per_modality=4)
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    runner = CliRunner()
    result = runner.invoke(app, ["index", "export-lance", str(tmp_path / "idx"), str(tmp_path / "lance")])
    assert result.exit_code == 0, result.output
    for extra in ([], ["--modality", "depth"]):
        args = ["a small picture of a digit", "--k", "4", "--format", "jsonl", "--quiet", "--mix", "raw", *extra]
        want = _jsonl(runner.invoke(app, ["search", str(tmp_path / "idx"), *args]))
        got = _jsonl(runner.invoke(app, ["search", str(tmp_path / "lance"), *args]))
        assert [g["path"] for g in got] == [w["path"] for w in want] and len(got) == 4
        np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=1e-5)
        assert all(g["modality"] == "depth" for g in got) or not extra


def test_search_cli_names_a_missing_lance_table(tmp_path, model):
    make_corpus(tmp_path / "src", per_modality=1)
    build_index(tmp_path / "idx", [tmp_path / "src"], model=model, options=QUIET)
    runner = CliRunner()
    runner.invoke(app, ["index", "export-lance", str(tmp_path / "idx"), str(tmp_path / "lance"), "--table", "t1"])
    result = runner.invoke(app, ["search", str(tmp_path / "lance"), "a digit", "--table", "t2", "--quiet"])
    assert isinstance(result.exception, IndexStoreError)
    message = str(result.exception)
    assert str(tmp_path / "lance") in message and "'t2'" in message and "t1" in message


def test_search_cli_names_a_damaged_lance_table(tmp_path):
    (tmp_path / "lance" / "anybind.lance").mkdir(parents=True)
    (tmp_path / "lance" / "anybind.lance" / "_versions").write_text("not a lance table\n")
    result = CliRunner().invoke(app, ["search", str(tmp_path / "lance"), "a digit", "--quiet"])
    assert isinstance(result.exception, IndexStoreError)
    assert str(tmp_path / "lance") in str(result.exception) and "'anybind'" in str(result.exception)
