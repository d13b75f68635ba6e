"""Every string a client sends is checked as text (a lone surrogate, a template with a field of its
own: 4xx JSON errors, never a 500), a client that goes away is no error, and what uvicorn answers
itself (a bad Content-Length) is what docs/guides/serving.md says."""
from __future__ import annotations

import base64
import logging
import socket
import sys
import time

import httpx
import pytest
from serve_helpers import b64file, error_of, find, raw_http, sample, serving

from binder.serve import ServeConfig, create_app


def _json(client, route: str, text: str):
    """POST ``text`` (JSON written by hand: it may hold escapes json.dumps would never write) to ``route``."""
    return client.post(route, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("route, body, kind", [
    ("/search", '{"query": "\\ud800"}', "invalid_text"),
    ("/search", '{"query": "a dog \\udfff"}', "invalid_text"),
    ("/search", '{"query": "x", "modality": "\\ud800"}', "invalid_text"),
    ("/search", '{"\\ud800": 1}', "invalid_request"),
    ("/v1/embeddings", '{"input": ["ok", "\\ud800"]}', "invalid_text"),
    ("/v1/embeddings", '{"input": [{"file": "AAAA", "filename": "\\ud800.png"}]}', "invalid_filename"),
    ("/classify", '{"file": {"file": "AAAA", "filename": "x.png"}, "labels": ["a", "\\ud800"]}', "invalid_text"),
    ("/classify", '{"file": {"file": "AAAA", "filename": "x.png"}, "labels": "a,\\ud800"}', "invalid_text"),
    ("/classify", '{"file": {"file": "AAAA", "filename": "x.png"}, "labels": ["a"], "templates": ["\\ud800 {}"]}',
     "invalid_text"),
    ("/classify", '{"file": {"file": "AAAA", "filename": "\\ud800.png"}, "labels": ["a"]}', "invalid_filename"),
])
def test_a_lone_surrogate_is_a_400_not_a_500(client, route, body, kind):
    message = error_of(_json(client, route, body), 400, kind)
    assert "\\ud" in message or "surrogate" in message or "unknown field" in message
    assert client.get("/healthz").status_code == 200


def test_a_lone_surrogate_in_a_search_upload_name_is_a_400(client, corpus):
    path = find(corpus, "image")
    body = ('{"input": [{"file": "' + base64.b64encode(path.read_bytes()).decode() + '", "filename": "a\\ud800.png"}]}')
    error_of(_json(client, "/v1/embeddings", body), 400, "invalid_filename")
    # a multipart name comes as bytes: whatever they are, the answer is a 4xx or a 200, never a 500
    raw = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename*=utf-8''%ED%A0%80.png\r\n\r\n"
    r = client.post("/search", content=raw + path.read_bytes() + b"\r\n--b--\r\n",
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("template", ["{} {x}", "a {x} of {}", "{} {0}", "{0} {1}", "{x}", "{} and {}", "{", "a {} }",
                                      "{} {!r}", "{} {0.__class__}", "{:>9}", "no field"])
def test_a_template_with_a_field_of_its_own_is_a_400(client, corpus, template):
    path = find(corpus, "image")
    r = client.post("/classify", json={"file": b64file(path), "labels": ["a", "b"], "templates": [template]})
    assert "template" in error_of(r, 400)
    r = client.post("/classify", files={"file": (path.name, path.read_bytes())},
                    data={"labels": "a,b", "template": template})
    assert "template" in error_of(r, 400)


def test_cli_classify_with_a_template_field_is_one_error_line(corpus, monkeypatch, capsys):
    from binder.cli import main

    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "1")
    monkeypatch.delenv("ANYBIND_MODEL", raising=False)
    monkeypatch.setattr(sys, "argv", ["anybind", "classify", str(find(corpus, "image")), "--labels", "a,b",
                                      "--template", "{} {x}", "--quiet"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("anybind: error: template '{} {x}': the label goes in one plain '{}'"), line


@pytest.fixture
def real_server(model, base_index):
    app = create_app(ServeConfig(base_index), model=model, model_name="tiny-test")
    with serving(app) as address:
        yield address


def test_a_client_that_goes_away_is_no_error_and_no_500(real_server, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(3):  # a body cut off half way, the connection closed
        with socket.create_connection(real_server, timeout=10) as conn:
            conn.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"query\": ")
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    with httpx.Client(base_url="http://{}:{}".format(*real_server), timeout=30) as http:
        while True:
            text = http.get("/metrics").text
            gone = sample(text, "anybind_requests_total", route="/search", method="POST", status="499")
            if gone == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert gone == 3, text
    assert sample(text, "anybind_requests_total", route="/search", method="POST", status="500") is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


def test_what_uvicorn_answers_itself_is_as_documented(real_server):
    answer = raw_http(real_server, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: abc\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Invalid HTTP request received." in answer
