"""Downloads that must not be taken as whole: HTML pages, cut-off bodies, gzip bombs, trickling servers,
and files in the cache that no checked download put there. Every case runs against a real HTTP
server on 127.0.0.1 with small limits, so each test takes a few seconds at most."""
from __future__ import annotations

import gzip
import json
import time

import pytest
from hub_helpers import CKPT, NAME, cache_files, closed_port, send_raw, sha256, trickle

import binder.hub.download as download_module
from binder.hub import (
    DownloadError,
    HubError,
    OfflineError,
    UnverifiedFileError,
    fetch_file,
    find_model,
    pull_model,
)
from binder.hub.cache import record_path
from binder.hub.download import Limits

HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n"
OCTET = {"Content-Type": "application/octet-stream"}


def _serve(hub, answer) -> None:
    hub.server.custom[CKPT] = answer


def _nothing_cached(hub) -> bool:
    """No file (whole or partial) and no record of one in downloads/, and no model folder."""
    return [f for f in cache_files(hub.home) if f != "downloads"] == []


@pytest.fixture
def unverified(hub):
    """The test entry without a sha256 (and without a size), as a user-registered entry often is."""
    hub.write(**{NAME: hub.entry(sha256=None, size=None)})
    return hub


@pytest.fixture
def fast(monkeypatch):
    """Limits small enough for tests: 1 s in all, 1000 B/s over 0.3 s windows, 2 s per read; no resumption."""
    monkeypatch.setenv("ANYBIND_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("ANYBIND_DOWNLOAD_MIN_RATE", "1000")
    monkeypatch.setenv("ANYBIND_DOWNLOAD_STALL", "2")
    monkeypatch.setattr(download_module, "RATE_WINDOW", 0.3)
    monkeypatch.setattr(download_module, "RETRIES", 0)


# --- without a sha256: HTML, lengths, the size bound --------------------------------------------------------

def test_html_error_page_is_refused(unverified):
    _serve(unverified, lambda h: send_raw(h, 200, {"Content-Type": "text/html; charset=utf-8",
                                                   "Content-Length": str(len(HTML))}, HTML))
    with pytest.raises(DownloadError, match=r"HTML page \(Content-Type text/html") as exc:
        pull_model(NAME, progress=False)
    assert unverified.server.url(CKPT) in str(exc.value) and "nothing was cached" in str(exc.value)
    assert _nothing_cached(unverified)


def test_html_body_under_a_binary_content_type_is_refused(unverified):
    body = b"\r\n  " + HTML.lower()
    _serve(unverified, lambda h: send_raw(h, 200, {**OCTET, "Content-Length": str(len(body))}, body))
    with pytest.raises(DownloadError, match="is an HTML page.*nothing was cached"):
        fetch_file(NAME, progress=False)
    assert _nothing_cached(unverified)


def test_body_without_content_length_is_refused(unverified):
    """Closing the connection ends such a body: a cut-off transfer looks exactly like a whole one."""
    half = unverified.data[: len(unverified.data) // 2]
    _serve(unverified, lambda h: send_raw(h, 200, OCTET, half))
    with pytest.raises(DownloadError, match=r"no Content-Length.*no sha256.*nothing was cached") as exc:
        fetch_file(NAME, progress=False)
    assert unverified.server.url(CKPT) in str(exc.value)
    assert _nothing_cached(unverified)


def _chunked(data: bytes, size: int = 100_000) -> bytes:
    """``data`` in HTTP/1.1 chunked framing."""
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_body_without_content_length_is_fine_with_a_sha256(hub, framing):
    """With a sha256 the digest decides, so a server that does not announce the length is still usable."""
    hub.write(**{NAME: hub.entry(size=None)})
    if framing == "chunked":
        _serve(hub, lambda h: send_raw(h, 200, {**OCTET, "Transfer-Encoding": "chunked"}, _chunked(hub.data)))
    else:
        _serve(hub, lambda h: send_raw(h, 200, OCTET, hub.data))
    raw, digest = fetch_file(NAME, progress=False)
    assert digest == sha256(hub.data) and raw.read_bytes() == hub.data


def test_chunked_body_is_refused_without_a_sha256(unverified):
    _serve(unverified, lambda h: send_raw(h, 200, {**OCTET, "Transfer-Encoding": "chunked"},
                                          _chunked(unverified.data)))
    with pytest.raises(DownloadError, match="no Content-Length"):
        fetch_file(NAME, progress=False)
    assert _nothing_cached(unverified)


def test_body_shorter_than_its_content_length_is_never_renamed(unverified, monkeypatch):
    """The first answer announces N bytes and breaks off; the resumed answer (206, total '*') ends short.

    The length announced first still holds: the file is not whole, and it is not renamed into place.
    """
    monkeypatch.setattr(download_module, "RETRIES", 1)
    data = unverified.data
    half, quarter = len(data) // 2, len(data) // 4

    def answer(h):
        rng = h.headers.get("Range")
        if rng is None:
            send_raw(h, 200, {**OCTET, "Content-Length": str(len(data))}, data[:half])
        else:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            send_raw(h, 206, {**OCTET, "Content-Range": f"bytes {start}-{len(data) - 1}/*"},
                     data[start:start + quarter])

    _serve(unverified, answer)
    with pytest.raises(DownloadError, match=rf"closed after {half + quarter} of {len(data)} bytes"):
        fetch_file(NAME, progress=False)
    target = unverified.home / "downloads" / CKPT
    assert not target.exists() and not record_path(find_model(NAME)).exists()

    # a server that always announces more than it sends: never whole, never renamed
    monkeypatch.setattr(download_module, "RETRIES", 0)
    (target.parent / f"{CKPT}.part").unlink()
    _serve(unverified, lambda h: send_raw(h, 200, {**OCTET, "Content-Length": str(len(data) + 1000)}, data))
    with pytest.raises(DownloadError, match=rf"closed after {len(data)} of {len(data) + 1000} bytes"):
        fetch_file(NAME, progress=False)
    assert not target.exists()


def test_announced_size_over_the_bound_is_refused_before_reading(unverified):
    unverified.write(**{NAME: unverified.entry(sha256=None, size=None, max_size=100_000)})
    bound = r"more than the entry's bound of 100000 bytes \(max_size\)"
    with pytest.raises(DownloadError, match=rf"announces {len(unverified.data)} bytes, {bound}"):
        fetch_file(NAME, progress=False)
    assert _nothing_cached(unverified)


def test_body_over_the_bound_is_cut_off(hub):
    """A verified entry without a size and a server without a length: the bound still stops the body."""
    hub.write(**{NAME: hub.entry(size=None, max_size=100_000)})
    _serve(hub, lambda h: send_raw(h, 200, OCTET, hub.data))
    with pytest.raises(DownloadError, match=r"more than the entry's bound of 100000 bytes \(max_size\)"):
        fetch_file(NAME, progress=False)
    assert _nothing_cached(hub)


# --- compressed answers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_sha256", [False, True])
@pytest.mark.parametrize("header", ["Content-Encoding: gzip", "Transfer-Encoding: gzip, chunked"])
def test_gzip_answer_is_refused_undecoded(hub, with_sha256, header):
    """20 MB of zeros in 20 KB on the wire: refused from its headers, nothing decoded, nothing written."""
    plain = bytes(20 * 2**20)
    hub.write(**{NAME: hub.entry(size=None, sha256=sha256(plain) if with_sha256 else None)})
    key, value = header.split(": ")
    _serve(hub, lambda h: send_raw(h, 200, {**OCTET, key: value}, gzip.compress(plain)))
    with pytest.raises(DownloadError, match=rf"compressed \({header}\).*nothing was cached") as exc:
        fetch_file(NAME, progress=False)
    assert hub.server.url(CKPT) in str(exc.value)
    assert _nothing_cached(hub)


# --- time: minimum rate, total time ----------------------------------------------------------------------

def test_trickling_body_fails_on_the_minimum_rate(unverified, fast, monkeypatch):
    # The total limit is set far from the rate window, so that on a loaded machine the two cannot race:
    # the message says which limit stopped the download (the body would take 200 s at 50 B/s, and the
    # server gives up after 4 s, which would be another error).
    monkeypatch.setenv("ANYBIND_DOWNLOAD_TIMEOUT", "30")
    _serve(unverified, lambda h: (send_raw(h, 200, {**OCTET, "Content-Length": "10000"}),
                                  trickle(h, bytes(10000), every=0.02)))
    with pytest.raises(DownloadError, match=r"slower than the minimum of 1000 B/s.*kept in .*\.part") as exc:
        fetch_file(NAME, progress=False)
    assert unverified.server.url(CKPT) in str(exc.value)
    assert not (unverified.home / "downloads" / CKPT).exists()


def test_download_that_takes_too_long_fails_on_the_total_time(unverified, fast):
    """Fast enough for the minimum rate (about 12 KB/s), yet not done within the 1 s limit."""
    _serve(unverified, lambda h: (send_raw(h, 200, {**OCTET, "Content-Length": str(2**20)}),
                                  trickle(h, bytes(2**20), every=0.02, chunk=256)))
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not finished within the time limit of 1 s.*next run resumes"):
        fetch_file(NAME, progress=False)
    assert time.monotonic() - start < 2.0
    assert not (unverified.home / "downloads" / CKPT).exists()


def test_trickling_headers_fail_on_the_total_time(unverified, fast, monkeypatch):
    """No body byte ever comes; with the rate check off (0) the total time still ends the wait."""
    monkeypatch.setenv("ANYBIND_DOWNLOAD_MIN_RATE", "0")

    def answer(h):
        h.wfile.write(b"HTTP/1.0 200 OK\r\n")
        trickle(h, b"X-Slow: " + b"a" * 400 + b"\r\n\r\n", every=0.02)

    _serve(unverified, answer)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="not finished within the time limit of 1 s"):
        fetch_file(NAME, progress=False)
    assert time.monotonic() - start < 2.0
    assert not (unverified.home / "downloads" / CKPT).exists()


def test_a_slow_transfer_above_the_minimum_rate_completes(unverified, fast, monkeypatch):
    """About 25 KB/s against a minimum of 1000 B/s: several rate windows pass, none trips."""
    monkeypatch.setenv("ANYBIND_DOWNLOAD_TIMEOUT", "8")
    data = unverified.data[:20_000]
    _serve(unverified, lambda h: (send_raw(h, 200, {**OCTET, "Content-Length": str(len(data))}),
                                  trickle(h, data, every=0.02, chunk=512)))
    raw, digest = fetch_file(NAME, progress=False)
    assert raw.read_bytes() == data and digest == sha256(data)


def test_offline_without_a_sha256_says_a_copy_needs_one(unverified):
    url = f"http://127.0.0.1:{closed_port()}/{CKPT}"
    unverified.write(**{NAME: unverified.entry(url=url, sha256=None, size=None)})
    with pytest.raises(OfflineError, match="has no sha256, so add the copy's sha256 to the entry"):
        fetch_file(NAME, progress=False)


def test_limits_come_from_the_environment(monkeypatch):
    for var in ("ANYBIND_DOWNLOAD_TIMEOUT", "ANYBIND_DOWNLOAD_MIN_RATE", "ANYBIND_DOWNLOAD_STALL"):
        monkeypatch.delenv(var, raising=False)
    assert Limits.from_env() == Limits(connect=15.0, stall=60.0, total=21600.0, min_rate=16384.0, rate_window=30.0)
    monkeypatch.setenv("ANYBIND_DOWNLOAD_MIN_RATE", "0")  # 0 turns the rate check off
    monkeypatch.setenv("ANYBIND_DOWNLOAD_TIMEOUT", "90")
    assert Limits.from_env().min_rate == 0 and Limits.from_env().total == 90
    monkeypatch.setenv("ANYBIND_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(HubError, match="ANYBIND_DOWNLOAD_TIMEOUT must be a positive number of seconds, got 'soon'"):
        Limits.from_env()


# --- the file already in the cache ---------------------------------------------------------------------------

def test_unrecorded_file_of_an_unverified_entry_is_not_trusted(unverified):
    """A file in downloads/ that no checked download put there (an older anybind, a copy by hand)."""
    target = unverified.home / "downloads" / CKPT
    target.parent.mkdir(parents=True)
    target.write_bytes(HTML)
    with pytest.raises(UnverifiedFileError) as exc:
        pull_model(NAME, progress=False)
    msg = str(exc.value)
    assert str(target) in msg and "no sha256" in msg and sha256(HTML) in msg and "delete it" in msg
    assert unverified.server.requests == [] and target.read_bytes() == HTML


def test_checked_download_is_recorded_reused_and_guarded(unverified, capfd):
    raw, digest = fetch_file(NAME, progress=False)
    record = json.loads(record_path(find_model(NAME)).read_text())
    assert record == {"url": unverified.server.url(CKPT), "size": len(unverified.data), "sha256": digest}
    assert fetch_file(NAME, progress=False) == (raw, digest) and len(unverified.server.requests) == 1
    assert "NOT verified against a published checksum" in capfd.readouterr().err

    changed = bytearray(raw.read_bytes())
    changed[-1] ^= 0xFF
    raw.write_bytes(bytes(changed))
    with pytest.raises(UnverifiedFileError, match=rf"{raw}: .*not the file the download on record.*{digest}"):
        fetch_file(NAME, progress=False)
    assert len(unverified.server.requests) == 1
