"""Every bad request is a 4xx JSON error naming the problem, the server stays up, and no upload is
left behind in its temp folder."""
from __future__ import annotations

import base64
import json
import os
from urllib.parse import unquote

import pytest
from serve_helpers import b64file, error_of, find, raw_get

from binder.serve.embedding import OUTSIDE


@pytest.fixture
def bad(serve):
    """A client with a 1 MiB upload limit; after each test the server still answers and the upload
    folder is empty."""
    client = serve(max_upload_mb=1.0)
    yield client
    assert client.get("/healthz").status_code == 200
    assert os.listdir(client.app.state.anybind.uploads.path) == []


def _upload(client, name: str, data: bytes, route: str = "/search"):
    return client.post(route, files={"file": (name, data)})


def test_empty_upload(bad):
    assert "empty" in error_of(_upload(bad, "clip.wav", b""), 400, "empty_upload")
    assert "empty" in error_of(bad.post("/v1/embeddings", json={"input": [{"file": "", "filename": "a.png"}]}), 400)


@pytest.mark.parametrize("modality", ["audio", "image", "depth", "imu"])
def test_truncated_upload_is_422_naming_the_file(bad, corpus, modality):
    path = find(corpus, modality)
    data = path.read_bytes()
    message = error_of(_upload(bad, f"cut{path.name}", data[: max(8, len(data) // 9)]), 422, "unreadable_input")
    assert message.startswith(f"cut{path.name}: ") and "anybind-serve-" not in message


def test_wrong_file_type(bad):
    assert "unknown file type" in error_of(_upload(bad, "run.exe", b"MZ\x90\x00"), 415, "unsupported_media_type")
    error_of(_upload(bad, "", b"abc"), 400)


def test_a_png_that_is_not_one(bad):
    error_of(_upload(bad, "photo.png", b"this is text, not a PNG"), 422, "unreadable_input")


@pytest.mark.parametrize("name", ["../../etc/passwd", "../x.wav", "a/b.wav", "..\\..\\x.png", "/etc/x.png"])
def test_path_in_an_upload_name_is_refused(bad, name):
    assert "path" in error_of(_upload(bad, name, b"RIFF...."), 400, "path_traversal")
    body = {"input": [{"file": base64.b64encode(b"abc").decode(), "filename": name}]}
    error_of(bad.post("/v1/embeddings", json=body), 400, "path_traversal")


def test_upload_over_the_size_limit(bad, corpus):
    big = b"\x00" * (1 << 20) + b"x" * 10
    assert "limit" in error_of(_upload(bad, "big.wav", big), 413, "payload_too_large")
    assert "limit" in error_of(bad.post("/v1/embeddings", json={"input": [{"file": base64.b64encode(big).decode(),
                                                                           "filename": "big.wav"}]}), 413)


def test_chunked_body_over_the_limit_is_cut_off(bad):
    def chunks():
        for _ in range(3):
            yield b"x" * (1 << 20)

    r = bad.post("/search", content=chunks(), headers={"content-type": "application/json"})
    error_of(r, 413, "payload_too_large")


@pytest.mark.parametrize("body, fragment", [
    ({"query": "'unclosed"}, "unclosed quote"),
    ({"query": "a + "}, "missing operand"),
    ({"query": "2e9*cat"}, "out of range"),
    ({"query": "cat - cat"}, "cancel out"),
    ({"query": "   "}, "empty"),
])
def test_malformed_expression(bad, body, fragment):
    assert fragment in error_of(bad.post("/search", json=body), 400)


@pytest.mark.parametrize("body, fragment", [
    ({"query": "x", "k": "abc"}, "k must be an integer"),
    ({"query": "x", "k": 0}, "k must be an integer"),
    ({"query": "x", "k": True}, "k must be an integer"),
    ({"query": "x", "k": 10**9}, "k must be an integer"),
    ({"query": 5}, "query must be a string"),
    ({"query": "x", "top_k": 3}, "unknown field 'top_k'"),
    ({"query": "x", "modality": "smell"}, "unknown modality"),
    ({"k": 3}, "give the query once"),
])
def test_wrong_field_types_and_values(bad, body, fragment):
    assert fragment in error_of(bad.post("/search", json=body), 400)


def test_wrong_content_types_and_bodies(bad):
    error_of(bad.post("/search", content=b"query=x", headers={"content-type": "text/plain"}), 415)
    error_of(bad.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 400,
             "invalid_json")
    error_of(bad.post("/search", json=["a", "list"]), 400, "invalid_json")
    error_of(bad.post("/search", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}), 400)
    error_of(bad.get("/search"), 405, "method_not_allowed")


@pytest.mark.parametrize("body, fragment", [
    ({"input": []}, "input is empty"),
    ({"input": [1, 2, 3]}, "token ids"),
    ({"input": [[1, 2]]}, "token ids"),
    ({"input": [None]}, "input[0] must be a string"),
    ({"model": "m"}, "input is missing"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "dimensions": 3}, "dimensions"),
    ({"input": [{"file": "!!!", "filename": "a.wav"}]}, "not valid base64"),
    ({"input": [{"file": "AAAA"}]}, "no file name"),
    ({"input": ["ok", ""]}, "input[1] is empty"),
])
def test_bad_embedding_requests(bad, body, fragment):
    assert fragment in error_of(bad.post("/v1/embeddings", json=body), 400)


def test_one_bad_file_among_inputs_names_its_index(bad, corpus):
    path = find(corpus, "image")
    body = {"input": ["fine", b64file(path), {"file": base64.b64encode(b"junk").decode(), "filename": "x.png"}]}
    assert error_of(bad.post("/v1/embeddings", json=body), 422).startswith("input[2] (x.png): ")


def test_query_terms_outside_the_index_all_get_one_answer(bad, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("a secret")
    answers = {error_of(bad.post("/search", json={"query": q}), 400, "invalid_query")
               for q in (str(outside), str(tmp_path / "missing.txt"), "../../etc/passwd", str(tmp_path) + "/",
                         f"{outside} + dog", "~/x.wav")}
    assert answers == {OUTSIDE}


@pytest.mark.parametrize("item, status, kind", [
    ("10", 404, "not_found"), ("999999", 404, "not_found"), ("-1", 400, "invalid_id"), ("..", 400, "invalid_id"),
    ("%2e%2e", 400, "invalid_id"), ("1.0", 400, "invalid_id"), ("abc", 400, "invalid_id"),
    ("..%2F..%2Fetc%2Fpasswd", 404, "not_found"), ("9" * 40, 400, "invalid_id"), ("0%00", 400, "invalid_id"),
    ("01", 400, "invalid_id"), ("+1", 400, "invalid_id"), ("00", 400, "invalid_id"),
])
def test_item_ids_outside_the_index(bad, item, status, kind):
    code, body = raw_get(bad.app, "/items/" + unquote(item))
    assert code == status and json.loads(body)["error"]["type"] == kind, body


def test_an_indexed_file_that_is_gone_is_404(serve, index_copy, tmp_path, model):
    from serve_helpers import QUIET

    from binder.index.build import build_index

    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "note.txt").write_text("soon gone")
    build_index(index_copy, [gone], model=model, options=QUIET)
    client = serve(index_copy)
    row = next(i for i, r in enumerate(client.app.state.anybind.index.metadata) if r["path"].endswith("note.txt"))
    (gone / "note.txt").unlink()
    assert "no longer there" in error_of(client.get(f"/items/{row}"), 404, "not_found")


def test_classify_bad_requests(bad, corpus):
    path = find(corpus, "image")
    files = {"file": (path.name, path.read_bytes())}
    assert "labels is missing" in error_of(bad.post("/classify", files=files), 400)
    assert "duplicate" in error_of(bad.post("/classify", files=files, data={"labels": "a,a"}), 400)
    assert "has no '{}'" in error_of(bad.post("/classify", files=files, data={"labels": "a,b", "template": "x"}), 400)
    error_of(bad.post("/classify", json={"file": "nope", "labels": ["a"]}), 400)


def test_an_unexpected_failure_is_a_500_json_line_not_a_traceback(bad, monkeypatch, caplog):
    async def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(bad.app.state.anybind, "current", broken)
    message = error_of(bad.post("/search", json={"query": "x"}), 500, "internal_error")
    assert "boom" not in message
    lines = [r.getMessage() for r in caplog.records if r.name == "anybind.serve"]
    assert lines == ["anybind serve: internal error on POST /search: RuntimeError: boom"]
    assert all(r.exc_info is None for r in caplog.records)
    monkeypatch.undo()


def test_closing_the_app_removes_the_upload_folder(model, base_index):
    from fastapi.testclient import TestClient

    from binder.serve import ServeConfig, create_app

    with TestClient(create_app(ServeConfig(base_index), model=model)) as client:
        folder = client.app.state.anybind.uploads.path
        assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
    assert not folder.exists()
