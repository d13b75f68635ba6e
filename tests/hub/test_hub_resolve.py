"""Named models end to end: download, resume, checks, offline, the cache, and what ``--model`` accepts."""
from __future__ import annotations

import json
import threading

import pytest
import torch
from hub_helpers import CKPT, NAME, cache_files, closed_port, sha256

from binder.hub import (
    ChecksumError,
    DownloadError,
    OfflineError,
    UnknownModelError,
    cache_state,
    download_path,
    fetch_file,
    find_model,
    model_dir,
    pull_model,
    resolve_model,
)
from binder.hub.checksum import sha256_file
from binder.model import BindingModel


def test_good_download_converts_once_and_is_cached(hub):
    folder = resolve_model(NAME, progress=False)
    assert folder == hub.home / "models" / NAME
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    record = json.loads((folder / "source.json").read_text())
    assert record["sha256"] == sha256(hub.data) and record["preset"] == "imagebind-test"
    assert sha256_file(hub.home / "downloads" / CKPT) == sha256(hub.data)
    assert hub.server.ranges() == [None]
    assert cache_state(find_model(NAME)).label == "converted"

    # the second resolve makes no request and converts nothing
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(NAME, progress=False) == folder
    assert len(hub.server.requests) == 1
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    model = BindingModel.load(folder)
    z = model.encode("imu", torch.randn(1, 6, 2000, generator=torch.Generator().manual_seed(0)))
    assert z.shape == (1, 16) and torch.isfinite(z).all()
    # nothing but the download, the model folder and its files is left behind
    assert cache_files(hub.home) == ["downloads", f"downloads/{CKPT}", "models", f"models/{NAME}",
                                     f"models/{NAME}/config.json", f"models/{NAME}/model.safetensors",
                                     f"models/{NAME}/source.json"]


def test_interrupted_download_resumes_with_range(hub):
    hub.server.drop_after = 1_000_000
    raw, digest = fetch_file(NAME, progress=False)
    assert hub.server.ranges() == [None, "bytes=1000000-"]
    assert digest == sha256(hub.data) == sha256_file(raw)
    assert not raw.with_name(raw.name + ".part").exists()


def test_partial_download_survives_the_run_and_the_next_one_resumes(hub, monkeypatch):
    monkeypatch.setattr("binder.hub.download.RETRIES", 0)
    hub.server.drop_after = 300_000
    with pytest.raises(DownloadError, match=r"300000 bytes received are kept .*\.part.*next run resumes"):
        pull_model(NAME, progress=False)
    part = download_path(find_model(NAME)).with_name(f"{CKPT}.part")
    assert part.stat().st_size == 300_000
    assert cache_state(find_model(NAME)).label == "partial"
    assert not model_dir(find_model(NAME)).exists()

    folder = pull_model(NAME, progress=False)
    assert hub.server.ranges() == [None, "bytes=300000-"]
    assert json.loads((folder / "source.json").read_text())["sha256"] == sha256(hub.data)


def test_server_that_ignores_range_starts_over(hub, capfd):
    hub.server.drop_after = 500_000
    hub.server.ignore_range = True
    raw, digest = fetch_file(NAME, progress=False)
    assert hub.server.ranges() == [None, "bytes=500000-"]  # asked to resume, got the whole file
    assert digest == sha256(hub.data) and raw.stat().st_size == len(hub.data)
    assert "starting over" in capfd.readouterr().err


def test_checksum_mismatch_is_refused_and_nothing_is_cached(hub):
    bad = bytearray(hub.data)
    bad[len(bad) // 2] ^= 0xFF
    hub.server.files[CKPT] = bytes(bad)
    url = hub.server.url(CKPT)
    with pytest.raises(ChecksumError) as exc:
        resolve_model(NAME, progress=False)
    msg = str(exc.value)
    assert url in msg and sha256(hub.data) in msg and sha256(bytes(bad)) in msg and "nothing was cached" in msg
    assert [f for f in cache_files(hub.home) if f != "downloads"] == []


def test_size_announced_by_the_server_is_checked_before_downloading(hub):
    hub.write(**{NAME: hub.entry(size=len(hub.data) + 1)})
    with pytest.raises(ChecksumError, match=rf"size mismatch: expected {len(hub.data) + 1} bytes, got {len(hub.data)}"):
        resolve_model(NAME, progress=False)
    assert [f for f in cache_files(hub.home) if f != "downloads"] == []


def test_offline_names_the_url_and_where_to_put_the_file(hub, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/{CKPT}"
    hub.write(**{NAME: hub.entry(url=url)})
    target = hub.home / "downloads" / CKPT
    with pytest.raises(OfflineError) as exc:
        resolve_model(NAME, progress=False)
    msg = str(exc.value)
    assert url in msg and str(target) in msg and "connection refused" in msg and sha256(hub.data) in msg
    assert not target.exists() and not target.with_name(f"{CKPT}.part").exists()

    # the file put there by hand is checked and used, with no server at all
    target.write_bytes(hub.data)
    folder = resolve_model(NAME, progress=False)
    assert (folder / "model.safetensors").is_file()


def test_a_wrong_file_placed_by_hand_is_refused(hub):
    target = hub.home / "downloads" / CKPT
    target.parent.mkdir(parents=True)
    target.write_bytes(hub.data[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="sha256 mismatch.*delete it or replace it"):
        resolve_model(NAME, progress=False)
    assert not model_dir(find_model(NAME)).exists() and hub.server.requests == []


def test_entry_without_sha256_checks_size_and_warns(hub, capfd, monkeypatch):
    hub.write(**{NAME: hub.entry(sha256=None, size=None)})
    raw, digest = fetch_file(NAME, progress=False)
    err = capfd.readouterr().err
    assert digest == sha256(hub.data)
    assert "NOT verified against a published checksum" in err and digest in err
    # a truncated answer is caught by the Content-Length even without a catalog size
    raw.unlink()
    hub.server.drop_after = 10
    monkeypatch.setattr("binder.hub.download.RETRIES", 0)
    with pytest.raises(DownloadError, match="the 10 bytes received are kept"):
        fetch_file(NAME, progress=False)


def test_unknown_name_lists_the_known_ones(hub, tmp_path):
    with pytest.raises(UnknownModelError) as exc:
        resolve_model("imagebind-hug")
    msg = str(exc.value)
    assert "'imagebind-hug'" in msg and "imagebind-huge" in msg and NAME in msg and "folder" in msg
    with pytest.raises(UnknownModelError, match="There is no folder"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "x.pth").write_bytes(b"")
    with pytest.raises(UnknownModelError, match="anybind convert imagebind"):
        resolve_model(str(tmp_path / "x.pth"))
    assert hub.server.requests == []


def test_an_existing_folder_wins(hub, tmp_path, monkeypatch):
    (tmp_path / NAME).mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model(NAME).resolve() == (tmp_path / NAME).resolve()
    assert resolve_model(tmp_path) == tmp_path
    assert hub.server.requests == []


def test_two_pulls_at_once_fetch_once(hub):
    results, errors = [], []

    def pull():
        try:
            results.append(pull_model(NAME, progress=False))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert hub.server.ranges() == [None]


def test_redefined_entry_is_converted_again(hub, ckpt_bytes):
    """A name pointed at another file (or preset) gets a fresh folder, not the stale one."""
    folder = pull_model(NAME, progress=False)
    other = ckpt_bytes  # same bytes under another name: the record still has to match url + sha256
    hub.server.files["other.pth"] = other
    hub.write(**{NAME: hub.entry(url=hub.server.url("other.pth"), filename="other.pth", sha256=None)})
    assert pull_model(NAME, progress=False) == folder
    assert json.loads((folder / "source.json").read_text())["url"].endswith("/other.pth")
    assert hub.server.ranges() == [None, None]


def test_a_part_the_server_cannot_resume_is_fetched_again(hub):
    """Without a catalog size a complete .part asks for bytes past the end: 416, then from the start."""
    hub.write(**{NAME: hub.entry(size=None)})
    part = hub.home / "downloads" / f"{CKPT}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(hub.data)
    raw, digest = fetch_file(NAME, progress=False)
    assert hub.server.ranges() == [f"bytes={len(hub.data)}-", None]
    assert digest == sha256(hub.data) and not part.exists()


def test_http_error_names_the_status(hub):
    hub.write(**{NAME: hub.entry(url=hub.server.url("gone.pth"), filename=CKPT)})
    with pytest.raises(DownloadError, match=r"gone\.pth failed: the server answered HTTP 404"):
        resolve_model(NAME, progress=False)
    assert [f for f in cache_files(hub.home) if f != "downloads"] == []
