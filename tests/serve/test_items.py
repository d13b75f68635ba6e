"""What ``GET /items/{id}`` and ``/thumbs/{id}.png`` hand out: a row's file only while its real path
is inside the index's roots and it is still the file that was indexed; indexing skips links out of
the folders given; byte ranges, and every range error in the JSON shape."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import QUIET, error_of

from binder.embed.shards import file_hash
from binder.index.build import build_index
from binder.index.store import IndexStore, index_roots
from binder.index.writer import IndexWriter

SECRET = "the secret outside the index\n"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file outside every indexed folder (standing in for /etc/passwd)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "passwd").write_text(SECRET)
    return folder / "passwd"


@pytest.fixture
def notes(tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "note.txt").write_text("a note about the digit seven\n")
    (folder / "other.txt").write_text("another note\n")
    return folder


def _row(client, name: str) -> int:
    return next(i for i, r in enumerate(client.app.state.anybind.index.metadata) if r["path"].endswith(name))


def test_indexing_skips_links_out_of_the_folders_given_and_records_the_roots(notes, outside, tmp_path, model):
    (notes / "passwd.txt").symlink_to(outside)
    (notes / "inner.txt").symlink_to(notes / "other.txt")  # a link that stays inside is indexed
    report = build_index(tmp_path / "idx", [notes], model=model, options=QUIET)
    skipped = {Path(f.path).name: f.reason for f in report.failures}
    assert set(skipped) == {"passwd.txt"}
    assert "symbolic link" in skipped["passwd.txt"] and str(outside) in skipped["passwd.txt"]
    manifest = IndexStore.open(tmp_path / "idx").manifest()
    assert manifest["roots"] == [os.path.realpath(notes)]
    assert {Path(r["path"]).name for r in IndexStore.open(tmp_path / "idx").snapshot().rows} == {
        "note.txt", "other.txt", "inner.txt"}


def test_a_file_replaced_by_a_link_out_after_indexing_is_not_served(serve, notes, outside, tmp_path, model):
    build_index(tmp_path / "idx", [notes], model=model, options=QUIET)
    client = serve(tmp_path / "idx")
    row = _row(client, "note.txt")
    assert client.get(f"/items/{row}").status_code == 200
    (notes / "note.txt").unlink()
    (notes / "note.txt").symlink_to(outside)
    for path in (f"/items/{row}", f"/thumbs/{row}.png"):
        r = client.get(path)
        assert "outside the folders" in error_of(r, 404, "not_found") and SECRET not in r.text


def test_a_link_out_in_an_old_index_without_roots_is_not_served(serve, notes, outside, tmp_path, model):
    """An index written before roots were recorded, holding a row for a link out (as older builds
    made): the served roots fall back to the folders of its rows, and the link is refused."""
    link = notes / "passwd.txt"
    link.symlink_to(outside)
    st = os.stat(outside)
    with IndexWriter(tmp_path / "idx", model.embed_dim) as writer:
        vector = np.zeros((1, model.embed_dim), np.float32)
        vector[0, 0] = 1
        writer.append(vector, [{"path": str(link), "modality": "text", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                "mtime": st.st_mtime, "hash": file_hash(outside), "shape": [1]}])
        writer.flush()
    manifest = IndexStore.open(tmp_path / "idx").manifest()
    assert "roots" not in manifest
    assert index_roots(manifest, IndexStore.open(tmp_path / "idx").snapshot().rows) == (os.path.realpath(notes),)
    client = serve(tmp_path / "idx")
    r = client.get("/items/0")
    assert "outside the folders" in error_of(r, 404, "not_found") and SECRET not in r.text
    error_of(client.get("/thumbs/0.png"), 404, "not_found")
    # `index add` to such an index keeps its rows inside: the folders of its rows become its roots
    more = tmp_path / "more"
    more.mkdir()
    (more / "x.txt").write_text("x")
    build_index(tmp_path / "idx", [more], model=model, options=QUIET, create=False)
    assert IndexStore.open(tmp_path / "idx").manifest()["roots"] == sorted(
        [os.path.realpath(notes), os.path.realpath(more)])


def test_a_changed_file_is_409_and_a_touched_one_is_still_served(serve, notes, tmp_path, model):
    build_index(tmp_path / "idx", [notes], model=model, options=QUIET)
    client = serve(tmp_path / "idx")
    note, other = _row(client, "note.txt"), _row(client, "other.txt")
    st = os.stat(notes / "note.txt")
    os.utime(notes / "note.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    assert client.get(f"/items/{note}").text == "a note about the digit seven\n"
    (notes / "other.txt").write_text("ANOTHER NOTE\n")  # same size, other bytes
    assert "changed since it was indexed" in error_of(client.get(f"/items/{other}"), 409, "item_changed")
    error_of(client.get(f"/thumbs/{other}.png"), 409, "item_changed")
    (notes / "other.txt").write_text("longer than it was\n")
    error_of(client.get(f"/items/{other}"), 409, "item_changed")


def test_byte_ranges_and_range_errors_in_the_json_shape(serve, notes, tmp_path, model):
    build_index(tmp_path / "idx", [notes], model=model, options=QUIET)
    client = serve(tmp_path / "idx")
    row = _row(client, "note.txt")
    data = (notes / "note.txt").read_bytes()
    whole = client.get(f"/items/{row}")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"].startswith("text/plain")
    assert whole.headers["x-content-type-options"] == "nosniff"
    part = client.get(f"/items/{row}", headers={"Range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == data[2:6]
    assert part.headers["content-range"] == f"bytes 2-5/{len(data)}"
    assert client.get(f"/items/{row}", headers={"Range": "bytes=-4"}).content == data[-4:]
    assert client.get(f"/items/{row}", headers={"Range": "bytes=3-"}).content == data[3:]
    assert client.get(f"/items/{row}", headers={"Range": "bytes=0-999999"}).content == data
    past = client.get(f"/items/{row}", headers={"Range": f"bytes={len(data)}-"})
    error_of(past, 416, "range_not_satisfiable")
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    for bad in ("bytes=5-2", "bytes=abc", "lines=1-2", "bytes=", "bytes=1-2,5-3"):
        error_of(client.get(f"/items/{row}", headers={"Range": bad}), 400, "invalid_range")
    stale = client.get(f"/items/{row}", headers={"Range": "bytes=0-1", "If-Range": '"another-version"'})
    assert stale.status_code == 200 and stale.content == data
    same = client.get(f"/items/{row}", headers={"Range": "bytes=0-1", "If-Range": whole.headers["etag"]})
    assert same.status_code == 206 and same.content == data[:2]
    assert client.head(f"/items/{row}").status_code in (200, 405)


def test_roots_are_a_backward_compatible_manifest_key(notes, tmp_path, model):
    build_index(tmp_path / "idx", [notes], model=model, options=QUIET)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["roots"] == [os.path.realpath(notes)]
    del manifest["roots"]
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    store = IndexStore.open(tmp_path / "idx")
    assert index_roots(store.manifest(), store.snapshot().rows) == (os.path.realpath(notes),)
