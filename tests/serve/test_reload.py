"""A new index generation (``anybind index add``, ``rm``) is served without a restart."""
from __future__ import annotations

import json

from samplegen import MAKERS
from serve_helpers import QUIET

from binder.index.build import build_index, remove_from_index


def test_added_files_are_found_after_a_commit(serve, index_copy, tmp_path, model):
    client = serve(index_copy)
    assert client.get("/healthz").json()["generation"] == 1
    new = tmp_path / "new"
    new.mkdir()
    paths = [MAKERS["image"](new, seed=s) for s in (5, 6)]
    report = build_index(index_copy, [new], model=model, options=QUIET, create=False)
    assert report.added == 2 and report.generation == 2
    body = client.post("/search", json={"query": "anything", "k": 50, "modality": "image"}).json()
    assert body["generation"] == 2
    found = {h["path"]: h["id"] for h in body["results"]}
    assert {str(p) for p in paths} <= set(found)
    assert client.get(f"/items/{found[str(paths[0])]}").content == paths[0].read_bytes()
    upload = client.post("/search", files={"file": ("q.png", paths[1].read_bytes())}, data={"k": "1"}).json()
    assert upload["results"][0]["path"] == str(paths[1])
    metrics = client.get("/metrics").text
    assert "anybind_index_generation 2" in metrics and "anybind_index_reloads_total 1" in metrics
    assert "anybind_index_rows 12" in metrics


def test_removed_files_leave_the_results(serve, index_copy, corpus):
    client = serve(index_copy)
    wav = next(str(p) for p in corpus.iterdir() if p.name.endswith(".wav") and ".speech." not in p.name)
    assert wav in {h["path"] for h in client.post("/search", json={"query": "x", "k": 50}).json()["results"]}
    remove_from_index(index_copy, [wav])
    body = client.post("/search", json={"query": "x", "k": 50}).json()
    assert body["generation"] == 2 and wav not in {h["path"] for h in body["results"]}
    assert len(body["results"]) == 9


def test_a_damaged_new_generation_keeps_the_old_one_served(serve, index_copy):
    client = serve(index_copy)
    manifest = index_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["generation"] += 1
    data["count"] += 5  # no longer the sum of live rows: damage
    manifest.write_text(json.dumps(data))
    r = client.post("/search", json={"query": "x", "k": 3})
    assert r.status_code == 200 and r.json()["generation"] == 1
