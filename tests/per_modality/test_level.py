"""Loudness normalization (modalities.level): a level shift no longer moves audio features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from samplegen_audio import chirp

from binder.errors import ConfigError
from modalities.audio import Audio
from modalities.level import loudness_db, normalize_level

SR = 16000


def _word(seconds: float = 0.6, amp: float = 0.3) -> np.ndarray:
    return (amp * chirp(seconds, SR)).astype(np.float32)


def test_loudness_reads_the_loud_part_not_the_silence_around_it():
    word = _word()
    padded = np.concatenate([np.zeros(3 * SR, np.float32), word, np.zeros(3 * SR, np.float32)])
    assert abs(loudness_db(padded, SR) - loudness_db(word, SR)) < 0.5  # 90 % silence hardly counts
    assert abs(loudness_db(word * 0.1, SR) - (loudness_db(word, SR) - 20.0)) < 1e-3
    assert loudness_db(np.zeros(SR, np.float32), SR) == float("-inf")
    assert np.isfinite(loudness_db(word[:100], SR))  # shorter than one frame: one frame
    stereo = np.stack([word, word])
    assert abs(loudness_db(stereo, SR) - loudness_db(word, SR)) < 1e-6


def test_normalize_level_hits_the_target_caps_the_boost_and_keeps_silence():
    word = _word()
    for gain in (0.03, 1.0, 3.0):
        out = normalize_level(word * gain, SR, -15.0, 40.0)
        assert out.dtype == np.float32 and out.shape == word.shape
        assert abs(loudness_db(out, SR) + 15.0) < 1e-3
    faint = word * 1e-4  # -80 dB below the word: boosting it to -15 dBFS would need more than 40 dB
    assert abs(loudness_db(normalize_level(faint, SR, -15.0, 40.0), SR) - (loudness_db(faint, SR) + 40.0)) < 1e-3
    silent = np.zeros(SR, np.float32)
    assert normalize_level(silent, SR, -15.0, 40.0) is silent
    stereo = np.stack([word, 0.5 * word])
    assert normalize_level(stereo, SR, -15.0, 40.0).shape == stereo.shape


def test_a_level_shift_leaves_the_features_where_they_were():
    word = _word()
    level, plain = Audio(clips=1, clip_duration=1.0, level="rms"), Audio(clips=1, clip_duration=1.0)
    for gain in (10 ** (-30 / 20), 10 ** (6 / 20)):  # -30 dB and +6 dB
        torch.testing.assert_close(level.preprocess(word * gain), level.preprocess(word), atol=1e-4, rtol=0)
        assert (plain.preprocess(word * gain) - plain.preprocess(word)).abs().max() > 0.1  # +6 dB: 0.15


def test_level_is_off_by_default_and_in_the_imagebind_presets():
    from binder.presets import preset_config

    word = _word()
    assert Audio().options.level == "none"
    ib = preset_config("imagebind-test").modality("audio")
    assert Audio(**ib.options).options.level == "none"
    torch.testing.assert_close(Audio(clips=1).preprocess(word * 0.1), Audio(clips=1).preprocess(word * 0.1))


@pytest.mark.parametrize("bad", [{"level": "peak"}, {"level": "rms", "max_level_gain_db": -1.0}])
def test_level_options_are_validated(bad):
    with pytest.raises(ConfigError, match="level"):
        Audio(**bad)


def test_speech_units_read_a_quieter_recording_as_the_same_features():
    from modalities.speech_units import SpeechUnits

    word = _word()
    quiet = word * 10 ** (-30 / 20)
    level, plain = SpeechUnits(level="rms"), SpeechUnits()
    a, b = level.preprocess(word), level.preprocess(quiet)
    real = ~torch.isnan(a).any(dim=-1)
    assert torch.equal(real, ~torch.isnan(b).any(dim=-1)) and real.sum() > 20
    torch.testing.assert_close(b[real], a[real], atol=1e-2, rtol=0)
    moved = (plain.preprocess(quiet)[real, 0] - plain.preprocess(word)[real, 0]).abs().mean()
    assert moved > 10  # c0, the log energy, falls with the level when nothing normalizes it
    with pytest.raises(ConfigError, match="speech_units level"):
        SpeechUnits(level="loud")
