"""The short-clip policy of audio and speech units: every recording down to one 25 ms analysis
window embeds (audio zero-pads its clips, speech units pad to the frames Δ features need); only
shorter files are refused, by name. Real spoken digits are often 0.2-0.25 s long."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from samplegen import SMALL_OPTIONS
from samplegen_audio import voiced_speech, write_wav

from binder.config import BindConfig, ModalityConfig
from binder.errors import ModalityError
from binder.model import BindingModel
from modalities.audio import ANALYSIS_WINDOW_S, Audio
from modalities.speech_units import DELTA_WIDTH, SpeechUnits, pad_to_delta_width

EXT = {"audio": ".wav", "speech_units": ".speech.wav"}
# (seconds, sample rate): the lengths real digits come in, at 16 kHz and at telephone 8 kHz, down to
# exactly one analysis window.
LENGTHS = [(0.03, 16000), (0.2, 16000), (0.24, 16000), (0.2, 8000), (ANALYSIS_WINDOW_S, 8000)]


@pytest.fixture(scope="module")
def model() -> BindingModel:
    mods = tuple(ModalityConfig(n, options=SMALL_OPTIONS[n]) for n in EXT)
    return BindingModel(BindConfig(modalities=mods))


@pytest.mark.parametrize("name", list(EXT))
@pytest.mark.parametrize("seconds,sr", LENGTHS)
def test_a_clip_down_to_one_window_embeds_as_a_unit_vector(model, tmp_path, name, seconds, sr):
    path = write_wav(tmp_path / f"short{EXT[name]}", voiced_speech(seconds, sr, seed=3), sr)
    z = model.embed_files(name, [path])
    assert z.shape == (1, model.embed_dim)
    assert torch.isfinite(z).all()
    assert abs(z.norm().item() - 1.0) < 1e-4


@pytest.mark.parametrize("name", list(EXT))
def test_a_file_shorter_than_one_window_is_refused_by_name(model, tmp_path, name):
    path = write_wav(tmp_path / f"click{EXT[name]}", voiced_speech(0.01, 16000), 16000)
    with pytest.raises(ModalityError) as info:
        model.embed_files(name, [path])
    assert info.value.path == str(path)
    assert "0.010 s long" in info.value.reason and "25 ms analysis window" in info.value.reason


def test_a_short_clip_keeps_its_sound_and_pads_the_rest():
    """0.2 s of speech is ~18 real frames of the 204, the rest the zero-fbank pad value."""
    audio = Audio(**{**SMALL_OPTIONS["audio"], "clips": 1, "trim_silence": False})
    x = audio.preprocess(voiced_speech(0.2, 16000, seed=1))
    frames = x[0, 0]  # (mels, target_length)
    pad = frames[:, -1:]
    real = (frames != pad).any(dim=0).nonzero().flatten()
    assert real.numel() == 1 + (3200 - 400) // 160  # kaldi frames of 0.2 s at 25/10 ms
    assert real.max().item() == real.numel() - 1  # the sound first, padding after


def test_speech_units_pad_short_speech_evenly_to_the_delta_width():
    hop = 160
    wave = np.ones(500, np.float32)
    padded = pad_to_delta_width(wave, hop)
    assert padded.shape == ((DELTA_WIDTH - 1) * hop,)
    left = int(np.argmax(padded != 0))
    right = padded.size - left - wave.size
    assert abs(left - right) <= 1 and np.array_equal(padded[left:left + wave.size], wave)
    long = np.ones(5000, np.float32)
    assert pad_to_delta_width(long, hop) is long
    x = SpeechUnits(**SMALL_OPTIONS["speech_units"]).preprocess(voiced_speech(0.03, 16000))
    assert torch.isfinite(x[:DELTA_WIDTH]).all() and torch.isnan(x[DELTA_WIDTH:]).all()


@pytest.mark.parametrize("cls", [Audio, SpeechUnits])
def test_min_duration_below_one_window_is_refused(cls):
    with pytest.raises(ValueError, match="analysis window"):
        cls(min_duration=0.01)
    assert cls(min_duration=0.5).options.min_duration == 0.5


def test_the_cli_embeds_a_folder_of_short_clips_and_reports_only_the_broken_one(model, tmp_path):
    from click.testing import CliRunner

    from binder.cli import app
    from binder.embed.shards import read_shards

    folder = tmp_path / "digits"
    folder.mkdir()
    for i, (seconds, sr) in enumerate(LENGTHS):
        write_wav(folder / f"word{i}.wav", voiced_speech(seconds, sr, seed=i), sr)
    write_wav(folder / "click.wav", voiced_speech(0.01, 16000), 16000)
    model_dir = model.save(tmp_path / "model")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["embed", str(folder), "--out", str(out), "--model", str(model_dir),
                                      "--quiet"], catch_exceptions=False)
    assert result.exit_code == 1  # one file refused
    assert "click.wav" in result.stderr and "analysis window" in result.stderr
    emb, meta = read_shards(out)
    assert sorted(m["path"] for m in meta) == sorted(str(folder / f"word{i}.wav") for i in range(len(LENGTHS)))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
