"""Adversarial inputs: nothing silently wrong.

A generated matrix of hostile files for every file modality (empty, truncated, wrong format,
NaN/Inf, huge finite values, wrong shape, too short, header bombs, complex and object arrays)
must each give a typed ModalityError naming the file; through the CLI they are one line each on
stderr, exit 1, the good files of the same batch still written, and no NaN anywhere. Model
folders (NaN weights, a config that is a list or declares absurd sizes, truncated weights) give
a CheckpointError; query strings give terms or a QueryError, never another exception (property
test). Checkpoints are byte-reproducible across processes.
"""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image
from samplegen import MAKERS, SMALL_OPTIONS
from samplegen_audio import voiced_speech, write_wav
from samplegen_video import moving_blob, write_video

from binder.config import BindConfig, ModalityConfig
from binder.embed.pipeline import Item, embed_items
from binder.embed.shards import read_shards
from binder.errors import CheckpointError, ModalityError, QueryError
from binder.model import BindingModel
from binder.registry import get_modality, modality_for_path

ROOT = Path(__file__).resolve().parent.parent
NPY_EXT = {"imu": ".imu.npy", "timeseries": ".npy", "depth": ".depth.npy", "thermal": ".thermal.npy"}
EXT = {"image": ".png", "text": ".txt", "depth": ".depth.png", "thermal": ".thermal.png", "video": ".mp4",
       "two_stream": ".twostream.mp4", "audio": ".wav", "speech_units": ".speech.wav", **{
           k: v for k, v in NPY_EXT.items() if k in ("imu",)}, "timeseries": ".csv"}
WAVS = ("audio", "speech_units")
VIDEOS = ("video", "two_stream")


# ---------------------------------------------------------------- hostile file makers


def _valid_array(name: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if name in ("depth", "thermal"):
        return (1 + rng.random((40, 40))).astype(np.float32)
    return rng.standard_normal((6, 400) if name == "imu" else (200, 3)).astype(np.float32)


def _save_npy(d: Path, stem: str, name: str, arr: np.ndarray, allow_pickle: bool = False) -> Path:
    p = d / f"{stem}{NPY_EXT[name]}"
    np.save(p, arr, allow_pickle=allow_pickle)
    return p


def _float_wav(d: Path, stem: str, name: str, fill: float | None = None, scale: float = 1.0) -> Path:
    wave = voiced_speech(1.0, 16000) * scale
    if fill is not None:
        wave[[100, 2000, 9000]] = fill
    return write_wav(d / f"{stem}{EXT[name]}", wave, 16000, subtype="FLOAT")


def empty(d, name):
    p = d / f"empty{EXT[name]}"
    p.write_bytes(b"")
    return p


def truncated(d, name):
    if name in NPY_EXT:
        src = _save_npy(d, "whole", name, _valid_array(name))
        p = d / f"truncated{NPY_EXT[name]}"
    else:
        sub = d / "src"
        sub.mkdir(exist_ok=True)
        src, p = MAKERS[name](sub), d / f"truncated{EXT[name]}"
    data = src.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def wrong_format(d, name):
    p = d / f"notes{EXT[name]}"
    if name == "text":
        p.write_bytes(bytes(range(256)) * 4)  # not UTF-8
    else:
        p.write_text("this is a plain text note, not a media file\n" * 20)
    return p


def nan_values(d, name):
    if name in WAVS:
        return _float_wav(d, "nan", name, fill=np.nan)
    arr = _valid_array(name)
    arr.reshape(-1)[[3, 50]] = [np.nan, np.inf]
    return _save_npy(d, "nan", name, arr)


def huge_values(d, name):
    if name in WAVS:
        return _float_wav(d, "huge", name, scale=1e30)
    if name == "text":  # huge text: above the size cap
        p = d / "huge.txt"
        p.write_text("word " * 250_000)
        return p
    if name == "timeseries":  # a CSV, so the check is not only for .npy
        p = d / "huge.csv"
        np.savetxt(p, _valid_array(name) * 1e30, delimiter=",")
        return p
    return _save_npy(d, "huge", name, _valid_array(name) * np.float32(1e30))


def wrong_shape(d, name):
    if name == "imu":  # 1-D: must be reported with the shape the file holds
        return _save_npy(d, "flat", name, np.zeros(1000, np.float32))
    if name == "timeseries":
        return _save_npy(d, "cube", name, np.zeros((4, 50, 50), np.float32))
    p = d / f"rgb{EXT[name]}"  # depth/thermal: a colour image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(p)
    return p


def too_short(d, name):
    if name in WAVS:
        return write_wav(d / f"blip{EXT[name]}", voiced_speech(0.01, 16000), 16000)  # under one 25 ms window
    if name in VIDEOS:
        return write_video(d / f"still{EXT[name]}", moving_blob(1))
    if name == "image":
        p = d / "dot.png"
        Image.new("RGB", (1, 1)).save(p)
        return p
    if name == "text":
        p = d / "blank.txt"
        p.write_text("   \n\t\n")
        return p
    if name in ("depth", "thermal"):
        return _save_npy(d, "tiny", name, np.ones((4, 4), np.float32))
    return _save_npy(d, "short", name, np.ones((6, 4) if name == "imu" else (3, 3), np.float32))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width × height greyscale pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def header_bomb(d, name):
    if name in NPY_EXT:  # a 200-byte .npy declaring shape (6, 10^11)
        p = d / f"bomb{NPY_EXT[name]}"
        header = {"descr": "<f4", "fortran_order": False, "shape": (6, 100_000_000_000)}
        with open(p, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.write(b"\0" * 64)
        return p
    if name in WAVS:  # a WAV header declaring 4 GB of samples
        p = d / f"bomb{EXT[name]}"
        fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
        p.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                      + b"data" + struct.pack("<I", 0xFFFFFF00) + b"\0" * 64)
        return p
    raise AssertionError(name)


def pixel_bomb(d, name):
    p = d / f"pixels{EXT[name]}"  # image / depth / thermal PNG declaring 100000 × 100000 pixels
    p.write_bytes(_png_header(100_000, 100_000))
    return p


def complex_array(d, name):
    return _save_npy(d, "complex", name, (_valid_array(name) + 1j).astype(np.complex64))


def object_array(d, name):
    arr = np.empty(4, dtype=object)
    arr[:] = [1, "two", None, 3.0]
    return _save_npy(d, "objects", name, arr, allow_pickle=True)


ARRAYS = tuple(NPY_EXT)
ALL = tuple(sorted(SMALL_OPTIONS))
# case → (maker, modalities it applies to, words the reason must hold)
CASES: dict[str, tuple] = {
    "empty": (empty, ALL, "empty"),
    "truncated": (truncated, tuple(n for n in ALL if n != "text"), ""),
    "wrong_format": (wrong_format, ALL, ""),
    "nan_inf": (nan_values, ARRAYS + WAVS, "NaN"),
    "huge_values": (huge_values, ARRAYS + WAVS + ("text",), ""),
    "wrong_shape": (wrong_shape, ("imu", "timeseries", "depth", "thermal"), ""),
    "too_short": (too_short, ALL, ""),
    "header_bomb": (header_bomb, ARRAYS + WAVS, ""),
    "pixel_bomb": (pixel_bomb, ("image", "depth", "thermal"), "bomb"),
    "complex_array": (complex_array, ARRAYS, "complex"),
    "object_array": (object_array, ARRAYS, "objects"),
}
MATRIX = [(name, case) for case, (_, names, _) in CASES.items() for name in names]
# Reasons that must name what is wrong (beyond the file name) for cases where it is specific.
SPECIFIC = {
    ("imu", "huge_values"): "out of range", ("timeseries", "huge_values"): "out of range",
    ("depth", "huge_values"): "out of range", ("thermal", "huge_values"): "out of range",
    ("audio", "huge_values"): "out of range", ("speech_units", "huge_values"): "out of range",
    ("text", "huge_values"): "larger than", ("imu", "wrong_shape"): "shape (1000,)",
    ("imu", "header_bomb"): "100000000000", ("audio", "header_bomb"): "truncated WAV",
}


@pytest.mark.parametrize("name,case", MATRIX, ids=[f"{n}-{c}" for n, c in MATRIX])
def test_hostile_file_gives_modality_error_naming_it(tmp_path, name, case):
    make, _, words = CASES[case]
    path = make(tmp_path, name)
    if not (name == "timeseries" and path.suffix == ".npy"):
        assert modality_for_path(path) == name
    modality = get_modality(name)(**SMALL_OPTIONS[name])
    with pytest.raises(ModalityError) as info:
        modality.prepare(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    assert words in err.reason and SPECIFIC.get((name, case), "") in err.reason, err.reason
    assert "\n" not in str(err)


def test_video_frames_above_max_pixels_are_refused_before_decoding(tmp_path):
    path = MAKERS["video"](tmp_path)
    for name in VIDEOS:
        with pytest.raises(ModalityError, match="max_pixels"):
            get_modality(name)(**{**SMALL_OPTIONS[name], "max_pixels": 1000}).prepare(path)


def test_image_above_max_pixels_option(tmp_path):
    path = MAKERS["image"](tmp_path)
    with pytest.raises(ModalityError, match="max_pixels"):
        get_modality("image")(max_pixels=100).prepare(path)


def test_bounds_leave_valid_inputs_alone(tmp_path):
    for name in ALL:  # every sample still prepares, with finite values where no NaN marks padding
        x = get_modality(name)(**SMALL_OPTIONS[name]).prepare(MAKERS[name](tmp_path))
        assert not torch.isinf(x).any()


# ---------------------------------------------------------------- the CLI, one batch of everything


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    cfg = BindConfig(modalities=tuple(ModalityConfig(n, options=SMALL_OPTIONS[n]) for n in ALL))
    return BindingModel(cfg).save(tmp_path_factory.mktemp("model") / "small")


@pytest.fixture(scope="module")
def model(model_dir) -> BindingModel:
    return BindingModel.load(model_dir)


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory) -> dict:
    """A folder of good files of every modality mixed with one hostile file per matrix case."""
    root = tmp_path_factory.mktemp("batch")
    good = [str(MAKERS[name](root, seed=seed)) for name in ALL for seed in (0, 1)]
    bad = []
    for i, (name, case) in enumerate(MATRIX):
        sub = root / f"case{i:02d}"
        sub.mkdir()
        path = CASES[case][0](sub, name)
        for extra in sub.glob("src"):  # sources of truncated files are valid files: keep them out
            for f in extra.iterdir():
                f.unlink()
            extra.rmdir()
        if case == "truncated" and name in NPY_EXT:
            (sub / f"whole{NPY_EXT[name]}").unlink()
        bad.append(str(path))
    return {"root": root, "good": good, "bad": bad}


def _assert_one_line_each(err: str, bad: list[str]) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    for path in bad:
        hits = [line for line in lines if line.startswith(f"anybind: skipped {path}: ")]
        assert len(hits) == 1, (path, err[-3000:])
    noise = [line for line in lines if not line.startswith(("anybind: skipped", "embedded ", "note: "))]
    assert not noise, noise  # no native decoder log lines, no warnings


def test_cli_embeds_good_files_of_a_hostile_batch(batch_dir, model_dir, model, tmp_path, capfd):
    out = tmp_path / "out"
    code, _, err = run_cli(["embed", str(batch_dir["root"]), "--out", str(out), "--model", str(model_dir),
                            "--quiet", "--batch-size", "4"], capfd)
    assert code == 1
    _assert_one_line_each(err, batch_dir["bad"])
    emb, meta = read_shards(out)
    assert sorted(m["path"] for m in meta) == sorted(batch_dir["good"])
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for row, m in zip(emb, meta):  # the batch gives each good file the embedding it has alone
        np.testing.assert_allclose(row, model.embed_files(m["modality"], [m["path"]])[0].numpy(), atol=1e-5)


def test_cli_jsonl_never_prints_nan(batch_dir, model_dir, capfd):
    code, out, err = run_cli(["embed", str(batch_dir["root"]), "--format", "jsonl", "--model", str(model_dir),
                              "--quiet"], capfd)
    assert code == 1
    _assert_one_line_each(err, batch_dir["bad"])

    def refuse(constant):
        raise AssertionError(f"non-finite {constant} in JSON output")

    rows = [json.loads(line, parse_constant=refuse) for line in out.splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(batch_dir["good"])


def test_search_on_hostile_queries(batch_dir, model_dir, tmp_path, capfd):
    out = tmp_path / "emb"
    good = [p for p in batch_dir["good"] if p.endswith(".txt")]
    assert run_cli(["embed", *good, "--out", str(out), "--model", str(model_dir), "--quiet"], capfd)[0] == 0
    base = ["search", str(out), "--model", str(model_dir), "--format", "jsonl", "--quiet"]
    long_text = "a very long description of a dog in the rain " * 8  # 368 characters: not a file name
    code, stdout, err = run_cli([*base, long_text], capfd)
    assert code == 0 and len(stdout.splitlines()) == len(good), err
    code, stdout, err = run_cli([*base, "--query", "-0.5*night + a dog"], capfd)
    assert code == 0 and stdout, err
    code, stdout, err = run_cli([*base, "--", "-night + a dog"], capfd)
    assert code == 0 and stdout, err
    for query, words in [("1e309*x", "out of range"), ("1e300*a + 1e300*b", "out of range"),
                         (f"{tmp_path}/", "is a folder")]:
        code, stdout, err = run_cli([*base, query], capfd)
        assert code == 2 and not stdout, (query, err)
        assert err.count("\n") == 1 and err.startswith("anybind: error:") and words in err, err
        assert "Traceback" not in err and "RuntimeWarning" not in err


# ---------------------------------------------------------------- outputs are checked, per row


def _nan_for_marked_rows(tokenizer: torch.nn.Module) -> torch.nn.Module:
    """Wrap an IMU tokenizer so rows whose first sample is above 50 come out as NaN tokens."""
    class Poison(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tokenizer

        def forward(self, x):
            tokens = self.inner(x)
            marked = x[:, 0, 0] > 50
            return torch.where(marked[:, None, None], torch.full_like(tokens, float("nan")), tokens)
    return Poison()


def test_a_nan_output_row_fails_its_file_and_keeps_the_rest(tmp_path):
    model = BindingModel(BindConfig(modalities=(ModalityConfig("imu", options=SMALL_OPTIONS["imu"]),))).eval()
    model.tokenizers["imu"] = _nan_for_marked_rows(model.tokenizers["imu"])
    good = [MAKERS["imu"](tmp_path, seed=s) for s in (0, 1)]
    arr = np.load(good[0])
    arr[0, 0] = 100.0  # within max_abs: only the model turns this one into NaN
    marked = tmp_path / "marked.imu.npy"
    np.save(marked, arr)
    items = [Item(str(p), "imu") for p in (good[0], marked, good[1])]
    failures: list = []
    batches = list(embed_items(model, items, batch_size=3, workers=1, progress=False, failures=failures))
    assert [i.path for b in batches for i in b.items] == [str(good[0]), str(good[1])]
    assert all(np.isfinite(b.embeddings).all() for b in batches)
    assert [(f.path, "non-finite output" in f.reason) for f in failures] == [(str(marked), True)]
    with pytest.raises(ModalityError, match="non-finite output") as info:
        model.embed_files("imu", [good[0], marked])
    assert info.value.path == str(marked)
    batch = model.modality("imu").collate([model.modality("imu").prepare(marked)])
    with torch.no_grad(), pytest.raises(ModalityError, match="non-finite output"):
        model.encode("imu", batch)


def test_a_batch_the_encoder_rejects_is_retried_item_by_item(tmp_path):
    model = BindingModel(BindConfig(modalities=(ModalityConfig("imu", options=SMALL_OPTIONS["imu"]),))).eval()
    inner = model.tokenizers["imu"]

    class Picky(torch.nn.Module):
        def forward(self, x):
            if (x[:, 0, 0] > 50).any():
                raise RuntimeError("the encoder cannot take this input")
            return inner(x)
    model.tokenizers["imu"] = Picky()
    good = [MAKERS["imu"](tmp_path, seed=s) for s in (0, 1)]
    arr = np.load(good[0])
    arr[0, 0] = 100.0
    marked = tmp_path / "marked.imu.npy"
    np.save(marked, arr)
    failures: list = []
    items = [Item(str(p), "imu") for p in (good[0], marked, good[1])]
    batches = list(embed_items(model, items, batch_size=3, workers=1, progress=False, failures=failures))
    assert [i.path for b in batches for i in b.items] == [str(good[0]), str(good[1])]
    assert [f.path for f in failures] == [str(marked)] and "cannot encode" in failures[0].reason


# ---------------------------------------------------------------- model folders


def _tamper_weights(folder: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(str(path))
    fn(state)
    save_file(state, str(path), metadata={"format": "pt"})


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _set_config(folder: Path, edit) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg = edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _nan_weights(d: Path) -> tuple[str, str]:
    name = "heads.imu.proj.weight"
    _tamper_weights(d, lambda s: s[name].view(-1)[:3].fill_(float("nan")))
    return "CheckpointError", name


def _config_list(d: Path) -> tuple[str, str]:
    (d / "config.json").write_text("[1, 2, 3]")
    return "CheckpointError", "must be a JSON object"


def _huge_width(d: Path) -> tuple[str, str]:
    def edit(cfg):
        cfg["bind"]["trunk"].update(kind="standalone", width=10**9)
        return cfg
    _set_config(d, edit)
    return "CheckpointError", "'width' = 1000000000 is out of range"


def _anchor_width(d: Path) -> tuple[str, str]:
    def edit(cfg):  # within the per-key bounds, but far more than the weights file holds
        cfg["anchor_arch"]["model_cfg"]["vision_cfg"].update(width=8192, layers=64)
        return cfg
    _set_config(d, edit)
    return "CheckpointError", "do not belong together"


def _string_width(d: Path) -> tuple[str, str]:
    def edit(cfg):
        cfg["bind"]["trunk"]["width"] = "wide"
        return cfg
    _set_config(d, edit)
    return "CheckpointError", "must be a number"


def _modalities_not_a_list(d: Path) -> tuple[str, str]:
    def edit(cfg):
        cfg["bind"]["modalities"] = [["imu"]]
        return cfg
    _set_config(d, edit)
    return "CheckpointError", "bad config"


def _truncated_weights(d: Path) -> tuple[str, str]:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    return "CheckpointError", "model.safetensors"


FOLDER_CASES = [_nan_weights, _config_list, _huge_width, _anchor_width, _string_width, _modalities_not_a_list,
                _truncated_weights]


@pytest.mark.parametrize("damage", FOLDER_CASES, ids=[f.__name__.strip("_") for f in FOLDER_CASES])
def test_damaged_model_folder_is_a_checkpoint_error(model_dir, tmp_path, damage):
    folder = _copy_model(model_dir, tmp_path / "m")
    _, words = damage(folder)
    with pytest.raises(CheckpointError) as info:
        BindingModel.load(folder)
    assert words in str(info.value), str(info.value)


def test_cli_refuses_nan_weights_in_one_line(model_dir, batch_dir, tmp_path, capfd):
    """The IMU head holds NaN: embedding an IMU file is refused in one line; a command that never
    reads that tower (only the parts a job needs are loaded) embeds other files correctly."""
    folder = _copy_model(model_dir, tmp_path / "m")
    _nan_weights(folder)
    imu = next(p for p in batch_dir["good"] if p.endswith(".imu.npy"))
    code, out, err = run_cli(["embed", imu, "--format", "jsonl", "--model", str(folder), "--quiet"], capfd)
    assert code == 2 and not out and err.count("\n") == 1 and "heads.imu.proj.weight" in err, err
    other = next(p for p in batch_dir["good"] if p.endswith(".wav"))
    code, out, err = run_cli(["embed", other, "--format", "jsonl", "--model", str(folder), "--quiet"], capfd)
    expected = BindingModel.load(model_dir).embed_files("audio", [other])[0].numpy()
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(json.loads(out)["embedding"], dtype=np.float32), expected)


def test_convert_refuses_truncated_safetensors(tmp_path, capfd):
    from safetensors.torch import save_file

    src = tmp_path / "imagebind.safetensors"
    save_file({"modality_heads.imu.3.weight": torch.randn(64, 64)}, str(src))
    src.write_bytes(src.read_bytes()[:-100])
    code, out, err = run_cli(["convert", "imagebind", str(src), str(tmp_path / "out"), "--preset",
                              "imagebind-test"], capfd)
    assert code == 2 and err.startswith("anybind: error:") and err.count("\n") == 1, err
    assert "safetensors" in err and not (tmp_path / "out").exists()


def test_convert_refuses_nan_tensors():
    from binder.imagebind import convert_state_dict

    with pytest.raises(CheckpointError, match="modality_heads.imu.3.weight"):
        convert_state_dict({"modality_heads.imu.3.weight": torch.full((4, 4), float("nan"))}, "imagebind-test")


# ---------------------------------------------------------------- byte-reproducible checkpoints


SAVE_SCRIPT = """
import sys
from binder.anchor import save_anchor_dir
from binder.model import BindingModel
model = BindingModel.default(seed=0)
model.save(sys.argv[1] + "/model")
save_anchor_dir(model.anchor, sys.argv[1] + "/anchor")
"""


def test_saving_the_same_model_in_two_processes_gives_identical_bytes(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, str(o)], cwd=ROOT, stderr=subprocess.PIPE)
             for o in outs]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode() if p.stderr else ""
    files = sorted(f.relative_to(outs[0]) for f in outs[0].rglob("*") if f.is_file())
    assert len(files) == 4
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    BindingModel.load(outs[0] / "model")  # the canonical header still loads


# ---------------------------------------------------------------- queries


def test_query_edge_cases(tmp_path, monkeypatch):
    from binder.index.query import parse_query

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (terms,) = parse_query("x" * 5000)  # longer than any file name: text, not OSError
    assert terms.kind == "text"
    (terms,) = parse_query("photos")  # a bare word stays text even if a folder has that name
    assert terms.kind == "text"
    for expr, words in [("photos/", "is a folder"), ("./photos + dog", "is a folder"), ("1e309*x", "out of range"),
                        ("1e7*x", "out of range"), ("nan*x", ""), ("a\0b.wav", "NUL")]:
        with pytest.raises(QueryError, match=words or None):
            parse_query(expr) if expr != "nan*x" else _nan_weight()


def _nan_weight():
    from binder.index.query import Term, embed_terms

    class Model:
        embed_dim = 3
    embed_terms(Model(), [Term(math.nan, "text", "x")])


def test_any_string_parses_or_raises_query_error(tmp_path_factory):
    import hypothesis  # in the test extra: a missing install must fail, not skip
    from hypothesis import strategies as st

    from binder.index.query import parse_query

    folder = tmp_path_factory.mktemp("q")
    (folder / "rain.wav").write_bytes(b"x")
    pieces = st.sampled_from([" + ", " - ", "*", "'", '"', "text:", "1e309", "-1e-3", "0", "2", ".5", "/", "~",
                              ".wav", "rain.wav", str(folder), str(folder / "rain.wav"), "\0", "\n", " ", "x" * 300,
                              "photo.jpg", "a dog", "+", "-", "é", "\ud800"])
    strings = st.one_of(st.text(max_size=400), st.lists(pieces, max_size=12).map("".join))

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(strings)
    def check(expr):
        try:
            terms = parse_query(expr)
        except QueryError:
            return
        assert terms and all(math.isfinite(t.weight) and t.kind in ("text", "file") for t in terms)

    check()
