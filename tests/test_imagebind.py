"""ImageBind presets: conversion and embeddings equal to the reference code, and its known problems fixed."""
from __future__ import annotations

import logging
import pickle
import warnings

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from PIL import Image
from reference_imagebind import TEST_KWARGS, random_reference, reference
from samplegen import MAKERS

from binder.errors import CheckpointError
from binder.imagebind import convert_imagebind, convert_state_dict, read_state_dict
from binder.model import BindingModel

REF_NAMES = {"image": "vision"}
SIX = ("image", "text", "audio", "depth", "thermal", "imu")


@pytest.fixture(scope="module")
def ref_model():
    return random_reference(TEST_KWARGS, seed=3)


@pytest.fixture(scope="module")
def converted(ref_model, tmp_path_factory):
    """The reference weights saved as ImageBind ships them (.pth), converted, reloaded from disk."""
    folder = tmp_path_factory.mktemp("ib")
    torch.save(ref_model.state_dict(), folder / "imagebind_test.pth")
    convert_imagebind(folder / "imagebind_test.pth", folder / "model", preset="imagebind-test")
    return BindingModel.load(folder / "model")


def _inputs(model: BindingModel) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return {
        "image": torch.randn(3, 3, 224, 224, generator=g),
        "text": model.modality("text").tokenizer()(["a dog barks", "rain on a street at night", "7"]),
        "audio": torch.randn(3, 3, 1, 128, 204, generator=g),
        "depth": torch.randn(3, 1, 224, 224, generator=g),
        "thermal": torch.randn(3, 1, 224, 224, generator=g),
        "imu": torch.randn(3, 6, 2000, generator=g),
    }


@pytest.mark.parametrize("name", SIX)
def test_converted_embeddings_equal_reference(ref_model, converted, name):
    batch = _inputs(converted)[name]
    key = REF_NAMES.get(name, name)
    with torch.inference_mode():
        expected = ref_model({key: batch})[key]
        scaled = converted.encode(name, batch, scaled=True)
        unit = converted.encode(name, batch)
    assert scaled.shape == expected.shape == (3, 16)
    assert (scaled - expected).abs().max().item() < 1e-5
    assert (unit - F.normalize(expected, dim=-1)).abs().max().item() < 1e-5
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_output_scales_come_from_the_checkpoint(ref_model, converted):
    """Fixed scales (audio 20, depth 5, thermal 10, IMU 5) and the learned text scale are kept."""
    text_log = ref_model.state_dict()["modality_postprocessors.text.1.log_logit_scale"]
    scales = {m.name: m.output_scale for m in converted.config.modalities}
    assert scales["audio"] == pytest.approx(20.0) and scales["depth"] == pytest.approx(5.0)
    assert scales["thermal"] == pytest.approx(10.0) and scales["imu"] == pytest.approx(5.0)
    assert scales["text"] == pytest.approx(float(text_log.exp()), rel=1e-6)
    assert scales["text"] != pytest.approx(1 / 0.07)  # the seeded noise moved it: it was read, not assumed


def test_a_misplaced_tensor_is_caught(ref_model):
    """Swapping two same-shaped tensors changes the output: the parity check has teeth."""
    state = dict(ref_model.state_dict())
    a, b = "modality_trunks.audio.blocks.0.norm_1.weight", "modality_trunks.audio.blocks.0.norm_2.weight"
    state[a], state[b] = state[b], state[a]
    model = convert_state_dict(state, "imagebind-test")
    batch = _inputs(model)["audio"]
    with torch.inference_mode():
        diff = (model.encode("audio", batch, scaled=True) - ref_model({"audio": batch})["audio"]).abs().max()
    assert diff > 1e-3


def test_convert_rejects_wrong_structure(ref_model):
    state = dict(ref_model.state_dict())
    state.pop("modality_heads.imu.3.weight")
    with pytest.raises(CheckpointError, match="missing.*heads.imu.proj.weight"):
        convert_state_dict(state, "imagebind-test")
    state = dict(ref_model.state_dict())
    state["modality_heads.audio.2.weight"] = torch.zeros(16, 48)
    with pytest.raises(CheckpointError, match="modality_heads.audio.2.weight"):
        convert_state_dict(state, "imagebind-test")


class Payload:
    """A pickled object: loading it would need to run code from this module."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_convert_refuses_a_pickle_that_needs_code(tmp_path):
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as fh:
        pickle.dump({"modality_heads.imu.3.weight": Payload()}, fh)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(bad)
    torch.save({"w": torch.zeros(2)}, tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="does not match preset"):
        convert_imagebind(tmp_path / "tiny.pth", tmp_path / "out", "imagebind-test")
    assert not (tmp_path / "out" / "config.json").exists()


def test_cli_convert_and_refusal(ref_model, tmp_path, capsys):
    from binder.cli import main

    torch.save(ref_model.state_dict(), tmp_path / "ib.pth")
    for argv, code in ((["convert", "imagebind", str(tmp_path / "ib.pth"), str(tmp_path / "m"),
                         "--preset", "imagebind-test"], 0),
                       (["convert", "imagebind", str(tmp_path / "nope.pth"), str(tmp_path / "n")], 2)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.argv", ["anybind", *argv])
            with pytest.raises(SystemExit) as exc:
                main()
                raise SystemExit(0)
        assert exc.value.code == code
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert "no such checkpoint" in capsys.readouterr().err


# --- preprocessing parity with the reference loaders -------------------------------------------

def _tone(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    chans = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(t.size)
             for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


AUDIO_CASES = {  # name: (seconds, sample rate, channels)
    "mono16k": (3.0, 16000, 1), "stereo44k": (5.0, 44100, 2), "short1s": (1.0, 16000, 1), "long22k": (7.5, 22050, 1),
    # a spoken digit's length, at 16 kHz and at telephone 8 kHz: the short-clip policy meets the reference
    "short02": (0.2, 16000, 1), "short02_8k": (0.2, 8000, 1),
}


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ibaudio")
    paths = {}
    for i, (name, (secs, sr, ch)) in enumerate(AUDIO_CASES.items()):
        paths[name] = d / f"{name}.wav"
        soundfile.write(paths[name], _tone(secs, sr, ch, i), sr, subtype="PCM_16")
    return paths


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_audio_preprocessing_equals_reference_loader(converted, audio_files, case):
    data, _ = reference()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = data.load_and_transform_audio_data([str(audio_files[case])], "cpu")[0]
    ours = converted.modality("audio").prepare(audio_files[case])
    assert ours.shape == expected.shape == (3, 1, 128, 204)
    assert (ours - expected).abs().max().item() < 1e-5


def test_image_preprocessing_equals_reference_loader(converted, tmp_path):
    data, _ = reference()
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h, ext) in enumerate([(320, 240, "png"), (200, 517, "jpg"), (224, 224, "png")]):
        p = tmp_path / f"im{i}.{ext}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    Image.fromarray(rng.integers(0, 255, (90, 120), dtype=np.uint8)).save(tmp_path / "grey.png")
    paths.append(tmp_path / "grey.png")
    expected = data.load_and_transform_vision_data([str(p) for p in paths], "cpu")
    modality = converted.modality("image")
    ours = torch.stack([modality.prepare(p) for p in paths])
    assert (ours - expected).abs().max().item() < 1e-5


def test_text_tokens_equal_reference_tokenizer(converted):
    data, _ = reference()
    texts = ["A dog barks!", "rain on a street at night", "café " * 40]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = data.load_and_transform_text(texts, "cpu")
    ours = torch.stack([converted.modality("text").preprocess(t) for t in texts])
    assert torch.equal(ours, expected)


# --- the reference's known problems, fixed ------------------------------------------------------

def test_short_audio_embeds_without_warnings(converted, audio_files, caplog, tmp_path):
    """Under 204 frames (about 2 s) the reference logs a warning per clip; anybind pads quietly."""
    soundfile.write(tmp_path / "blip.wav", _tone(0.4, 16000, 1, 5), 16000)
    data, _ = reference()
    with caplog.at_level(logging.WARNING):
        data.load_and_transform_audio_data([str(audio_files["short1s"])], "cpu")
    assert any("frames" in r.getMessage() for r in caplog.records)  # the reference does warn
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING):
            z = converted.embed_files("audio", [audio_files["short1s"], tmp_path / "blip.wav"])
    assert not caplog.records
    assert torch.isfinite(z).all() and z.shape == (2, 16)


@pytest.mark.parametrize("samples", [100, 2000, 4321])
def test_imu_of_any_length_is_resampled(converted, tmp_path, samples):
    rng = np.random.default_rng(samples)
    path = tmp_path / f"walk{samples}.imu.npy"
    np.save(path, rng.standard_normal((6, samples)).astype(np.float32))
    x = converted.modality("imu").prepare(path)
    assert x.shape == (6, 2000)
    assert torch.isfinite(converted.embed_files("imu", [path])).all()


def test_depth_and_thermal_files_embed(converted, tmp_path):
    """The reference has no depth or thermal loader; the preset reads the files directly."""
    z_depth = converted.embed_files("depth", [MAKERS["depth"](tmp_path, 0), MAKERS["depth"](tmp_path, 1)])
    z_thermal = converted.embed_files("thermal", [MAKERS["thermal"](tmp_path, 0)])
    assert z_depth.shape == (2, 16) and z_thermal.shape == (1, 16)
    assert not torch.allclose(z_depth[0], z_depth[1])
