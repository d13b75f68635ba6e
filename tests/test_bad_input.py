"""Bad files: every modality turns them into a ModalityError naming the file, and the CLI reports
them on stderr, embeds the good files anyway, and exits 1."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from samplegen import MAKERS, SMALL_OPTIONS
from samplegen_audio import voiced_speech, write_wav
from samplegen_video import moving_blob, write_video

from binder.cli import app
from binder.config import BindConfig, ModalityConfig
from binder.embed.shards import read_shards
from binder.errors import ModalityError
from binder.model import BindingModel
from binder.registry import get_modality, modality_for_path

SMALL = SMALL_OPTIONS
EXT = {
    "image": ".png", "text": ".txt", "depth": ".depth.png", "thermal": ".thermal.png", "video": ".mp4",
    "two_stream": ".twostream.mp4", "audio": ".wav", "speech_units": ".speech.wav", "imu": ".imu.npy",
    "timeseries": ".csv",
}
TEXT = "this is a plain text note, not a media file\n" * 20


def _valid(d: Path, name: str) -> Path:
    sub = d / f"valid_{name}"
    sub.mkdir(exist_ok=True)
    return MAKERS[name](sub)


def _empty(d, name):
    p = d / f"empty{EXT[name]}"
    p.write_bytes(b"")
    return p


def _truncated(d, name):
    data = _valid(d, name).read_bytes()
    p = d / f"truncated{EXT[name]}"
    p.write_bytes(data[: len(data) // 2])
    return p


def _wrong_format(d, name):
    p = d / f"notes{EXT[name]}"
    p.write_text(TEXT)
    return p


def _nan(d, name):
    rng = np.random.default_rng(0)
    if name == "imu":
        arr, p = rng.standard_normal((6, 500)).astype(np.float32), d / "nan.imu.npy"
    elif name in ("depth", "thermal"):
        arr, p = (1 + rng.random((40, 40))).astype(np.float32), d / f"nan.{name}.npy"
    else:
        arr, p = rng.standard_normal((200, 3)).astype(np.float32), d / f"nan_{name}.npy"
    arr.reshape(-1)[[3, 50, 77]] = np.nan
    np.save(p, arr)
    return p


def _nan_csv(d, name):
    sig = np.random.default_rng(1).standard_normal((100, 3))
    p = d / "nan.csv"
    np.savetxt(p, sig, delimiter=",", header="a,b,c", comments="")
    lines = p.read_text().splitlines()
    lines[40] = "0.5,nan,0.25"
    p.write_text("\n".join(lines) + "\n")
    return p


def _channels(d, name):
    if name == "imu":
        p = d / "five.imu.npy"
        np.save(p, np.random.default_rng(0).standard_normal((5, 400)).astype(np.float32))
    elif name == "depth":
        p = d / "rgb.depth.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
    else:  # timeseries with max_channels=4
        p = d / "wide.csv"
        np.savetxt(p, np.random.default_rng(0).standard_normal((100, 6)), delimiter=",")
    return p


def _short_audio(d, name):  # 10 ms: less than one 25 ms analysis window
    return write_wav(d / f"blip{EXT[name]}", voiced_speech(0.01, 16000), 16000)


def _one_frame(d, name):
    return write_video(d / f"still{EXT[name]}", moving_blob(1))


ALL = sorted(SMALL)
CASES = (
    [(n, "empty", _empty, "empty") for n in ALL]
    # text cut in half is still text; every other format must notice the missing bytes (for WAV,
    # the data chunk is shorter than its header says).
    + [(n, "truncated", _truncated, "") for n in ALL if n != "text"]
    + [(n, "wrong_format", _wrong_format, "") for n in ALL if n != "text"]
    + [(n, "nan_npy", _nan, "NaN") for n in ("imu", "timeseries", "depth", "thermal")]
    + [("timeseries", "nan_csv", _nan_csv, "NaN")]
    + [("imu", "channels", _channels, "channels"), ("depth", "channels", _channels, "channel"),
       ("timeseries", "channels", _channels, "at most 4")]
    + [(n, "short_audio", _short_audio, "shorter than min_duration") for n in ("audio", "speech_units")]
    + [(n, "one_frame", _one_frame, "only 1 frame") for n in ("video", "two_stream")]
)


@pytest.mark.parametrize("name,case,make,reason", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_file_raises_modality_error_naming_it(tmp_path, name, case, make, reason):
    path = make(tmp_path, name)
    assert modality_for_path(path) == name  # the CLI would route this file to this modality
    modality = get_modality(name)(**SMALL[name])
    with pytest.raises(ModalityError) as info:
        modality.prepare(path)
    err = info.value
    assert err.path == str(path)
    assert path.name in str(err) and str(path) in str(err)
    assert reason in err.reason


def test_the_bad_file_builders_start_from_valid_data(tmp_path):
    # the truncated cases above cut a sample that is itself fine, and a sane short audio/video is accepted
    for name in ALL:
        modality = get_modality(name)(**SMALL[name])
        assert tuple(modality.prepare(_valid(tmp_path, name)).shape) == modality.input_shape()
    ok = write_wav(tmp_path / "ok.speech.wav", voiced_speech(0.5, 16000), 16000)
    assert get_modality("speech_units")(**SMALL["speech_units"]).prepare(ok).shape == (200, 39)
    two = write_video(tmp_path / "two.mp4", moving_blob(2))
    assert get_modality("video")(**SMALL["video"]).prepare(two).shape == (3, 4, 32, 32)


# ---------------------------------------------------------------- the CLI


GOOD = ("image", "text", "depth", "thermal", "imu", "timeseries", "video")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    cfg = BindConfig(modalities=tuple(ModalityConfig(n, options=SMALL[n]) for n in GOOD))
    return BindingModel(cfg).save(tmp_path_factory.mktemp("model") / "small")


@pytest.fixture(scope="module")
def loaded(model_dir) -> BindingModel:
    return BindingModel.load(model_dir)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("inputs")
    good_dir, mixed_dir = root / "good", root / "mixed"
    good_dir.mkdir()
    mixed_dir.mkdir()
    good = {}
    for name in GOOD:
        for seed in (0, 1):
            for d in (good_dir, mixed_dir):
                p = MAKERS[name](d, seed=seed)
                good.setdefault(d.name, []).append((str(p), name))
    bad = [_empty(mixed_dir, "depth"), _nan(mixed_dir, "imu"), _wrong_format(mixed_dir, "video"),
           _channels(mixed_dir, "timeseries")]
    (mixed_dir / "readme.unknownext").write_text("skipped silently inside a folder\n")
    return {"good": good_dir, "mixed": mixed_dir, "good_items": good["good"], "mixed_items": good["mixed"],
            "bad": [str(p) for p in bad], "root": root}


def _invoke(args):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _check_shards(out: Path, expected: list[tuple[str, str]], model: BindingModel) -> np.ndarray:
    emb, meta = read_shards(out)
    assert emb.dtype == np.float32 and emb.shape == (len(expected), model.embed_dim)
    assert sorted((m["path"], m["modality"]) for m in meta) == sorted(expected)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for row, m in zip(emb, meta):  # row i is the embedding of metadata line i
        assert m["shape"] == list(model.modality(m["modality"]).input_shape())
        ref = model.embed_files(m["modality"], [m["path"]])[0].numpy()
        np.testing.assert_allclose(row, ref, atol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == len(expected) and manifest["dim"] == model.embed_dim
    return emb


def test_cli_embeds_good_files_and_reports_bad_ones(folders, model_dir, loaded, tmp_path):
    out = tmp_path / "out"
    result = _invoke(["embed", str(folders["mixed"]), "--out", str(out), "--model", str(model_dir), "--quiet"])
    assert result.exit_code == 1, result.stderr
    _check_shards(out, folders["mixed_items"], loaded)
    for bad in folders["bad"]:
        assert any(line.startswith(f"anybind: skipped {bad}:") for line in result.stderr.splitlines()), bad
    assert f"{len(folders['mixed_items'])} file(s)" in result.stderr
    assert f"{len(folders['bad'])} failed" in result.stderr
    assert "readme.unknownext" not in result.stderr + result.stdout  # unknown types inside a folder are skipped


def test_cli_exits_0_with_only_good_files(folders, model_dir, loaded, tmp_path):
    out = tmp_path / "out"
    result = _invoke(["embed", str(folders["good"]), "--out", str(out), "--model", str(model_dir), "--quiet",
                      "--batch-size", "3"])
    assert result.exit_code == 0, result.stderr
    assert "skipped" not in result.stderr and "0 failed" in result.stderr
    _check_shards(out, folders["good_items"], loaded)


def test_cli_jsonl_matches_npy_rows(folders, model_dir, tmp_path):
    out = tmp_path / "out"
    npy = _invoke(["embed", str(folders["mixed"]), "--out", str(out), "--model", str(model_dir), "--quiet"])
    jsonl = _invoke(["embed", str(folders["mixed"]), "--format", "jsonl", "--model", str(model_dir), "--quiet"])
    assert npy.exit_code == jsonl.exit_code == 1
    emb, meta = read_shards(out)
    lines = [json.loads(line) for line in jsonl.stdout.splitlines() if line.strip()]
    assert len(lines) == len(folders["mixed_items"]) == len(meta)
    by_path = {m["path"]: row for m, row in zip(meta, emb)}
    for obj, m in zip(lines, meta):
        assert set(obj) == {"path", "modality", "embedding"}
        assert (obj["path"], obj["modality"]) == (m["path"], m["modality"])
        assert all(isinstance(v, float) for v in obj["embedding"])
        np.testing.assert_array_equal(np.asarray(obj["embedding"], dtype=np.float32), by_path[obj["path"]])
    for bad in folders["bad"]:
        assert bad not in jsonl.stdout and f"skipped {bad}" in jsonl.stderr


def test_cli_reports_missing_path_and_unknown_extension(folders, model_dir, tmp_path):
    missing = tmp_path / "nope" / "gone.png"
    unknown = tmp_path / "data.unknownext"
    unknown.write_text("1,2,3\n")
    good = folders["good_items"][0][0]
    out = tmp_path / "out"
    result = _invoke(["embed", str(missing), str(unknown), good, "--out", str(out), "--model", str(model_dir),
                      "--quiet"])
    assert result.exit_code == 1
    err = result.stderr
    assert f"skipped {missing}: no such file" in err
    assert f"skipped {unknown}: unknown file type" in err
    emb, meta = read_shards(out)
    assert [m["path"] for m in meta] == [good] and emb.shape == (1, 64)
    assert torch.isfinite(torch.from_numpy(emb)).all()


def test_a_plain_npy_map_is_refused_with_a_hint_how_to_name_it(tmp_path):
    from binder.registry import get_modality

    path = tmp_path / "scan.npy"
    np.save(path, np.ones((120, 160), np.float32))
    with pytest.raises(ModalityError) as err:
        get_modality("timeseries")().prepare(path)
    assert err.value.path == path or str(err.value.path) == str(path)
    assert "scan.depth.npy" in err.value.reason and "--modality depth" in err.value.reason
