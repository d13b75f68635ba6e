"""Room, microphone and channel augmentations (modalities.augment.channel): each does what it claims."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import correlate

from modalities.augment import AudioAugment, augment_wave
from modalities.augment import channel as C

SR = 16000


def _tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _gain_db(before: np.ndarray, after: np.ndarray, edge: int = 2000) -> float:
    """Level change in dB, away from filter start-up at the edges."""
    a, b = before[edge:-edge].astype(np.float64), after[edge:-edge].astype(np.float64)
    return 10 * math.log10(np.mean(b ** 2) / np.mean(a ** 2))


def _band_energy(wave: np.ndarray, low_hz: float, high_hz: float, sr: int = SR) -> float:
    """Mean power per frequency bin between ``low_hz`` and ``high_hz``."""
    spec = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(wave.shape[-1], 1 / sr)
    return float(spec[(freqs >= low_hz) & (freqs < high_hz)].mean())


def test_lowpass_removes_what_lies_above_the_cutoff_and_keeps_what_lies_below():
    low, high = _tone(500), _tone(5000)
    assert abs(_gain_db(low, C.lowpass(low, SR, 3000))) < 0.5
    assert _gain_db(high, C.lowpass(high, SR, 3000)) < -40
    assert np.array_equal(C.lowpass(high, SR, 8000), high)  # at Nyquist: nothing to cut


@pytest.mark.parametrize("rate", [8000, 11025])
def test_a_trip_through_a_lower_rate_leaves_nothing_above_its_nyquist(rate):
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    out = C.through_rate(noise, SR, rate)
    assert out.shape == noise.shape and out.dtype == np.float32
    above, below = _band_energy(out, rate / 2 + 600, SR / 2), _band_energy(out, 200, rate / 2 - 500)
    assert above < 1e-3 * below  # 30 dB down past the resampler's transition band
    assert _band_energy(out, 200, 2000) == pytest.approx(_band_energy(noise, 200, 2000), rel=0.05)
    assert np.array_equal(C.through_rate(noise, SR, 16000), noise)


def test_shelves_tilt_lows_and_highs_by_their_gains():
    low, mid, high = _tone(60), _tone(1000), _tone(7000)
    assert _gain_db(low, C.shelf_eq(low, SR, 8.0, -8.0)) == pytest.approx(8.0, abs=1.0)
    assert _gain_db(high, C.shelf_eq(high, SR, 8.0, -8.0)) == pytest.approx(-8.0, abs=1.0)
    assert abs(_gain_db(mid, C.shelf_eq(mid, SR, 8.0, -8.0))) < 3.0
    np.testing.assert_allclose(C.shelf_eq(mid, SR, 0.0, 0.0), mid, atol=1e-6)


def test_the_synthetic_room_decays_by_60_db_over_its_rt60_with_the_drr_asked_for():
    rir = C.synthetic_rir(SR, 0.5, np.random.default_rng(1), direct_to_reverb_db=6.0)
    assert rir.shape == (SR // 2,) and rir[0] == 1.0
    tail = rir[1:].astype(np.float64) ** 2
    assert 10 * math.log10(1.0 / tail.sum()) == pytest.approx(6.0, abs=1e-6)
    edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())  # Schroeder's energy decay curve
    t20 = (np.argmax(edc < -25) - np.argmax(edc < -5)) / SR  # the -5 to -25 dB slope, extrapolated
    assert 3 * t20 == pytest.approx(0.5, rel=0.15)
    assert not np.array_equal(rir, C.synthetic_rir(SR, 0.5, np.random.default_rng(2)))


def test_reverberation_keeps_length_and_level_and_a_dirac_room_changes_nothing():
    x = _tone(440)
    dirac = np.zeros(100, np.float32)
    dirac[0] = 1.0
    np.testing.assert_allclose(C.reverberate(x, dirac), x, atol=1e-5)
    wet = C.reverberate(x, C.synthetic_rir(SR, 0.4, np.random.default_rng(0), 0.0))
    assert wet.shape == x.shape and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-4)
    stereo = np.stack([x, 0.5 * x])
    assert C.reverberate(stereo, dirac).shape == stereo.shape


@pytest.mark.parametrize("codec", list(C.CODECS))
def test_every_codec_round_trip_keeps_the_signal_and_changes_it_the_same_way_each_time(codec):
    t = np.arange(SR) / SR
    x = (0.2 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    y = C.codec_round_trip(x, SR, codec)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(y, C.codec_round_trip(x, SR, codec))
    assert not np.array_equal(y, x)
    lag = int(np.argmax(correlate(y, x, mode="full"))) - (x.size - 1)  # codec delay (AMR: ~5 ms)
    assert 0 <= lag < 0.02 * SR
    aligned = np.corrcoef(x[: x.size - lag], y[lag:])[0, 1]
    assert aligned > 0.8, aligned


def test_a_telephone_codec_leaves_nothing_above_4_khz():
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    y = C.codec_round_trip(noise, SR, "mulaw")
    assert _band_energy(y, 4600, SR / 2) < 1e-3 * _band_energy(y, 300, 3500)


def test_channel_draws_come_last_and_only_when_asked_for():
    """With the channel options off, nothing is drawn for them (older recipes replay unchanged); with
    a codec always on, the result is the codec applied to what the other draws made."""
    x = _tone(300)
    off = dict(p_reverb=0.0, p_eq=0.0, p_band=0.0, p_codec=0.0)
    base = AudioAugment(p_speed=1.0, noise_p=1.0, p_gain=1.0, **off)
    plain = augment_wave(x, np.random.default_rng(5), base, SR)
    coded = augment_wave(x, np.random.default_rng(5), AudioAugment(p_speed=1.0, noise_p=1.0, p_gain=1.0,
                                                                   **{**off, "p_codec": 1.0}, codecs=("alaw",)), SR)
    np.testing.assert_array_equal(coded, C.codec_round_trip(plain, SR, "alaw"))
    everything = AudioAugment(p_reverb=1.0, p_eq=1.0, p_band=1.0, p_codec=1.0)
    a = augment_wave(x, np.random.default_rng(9), everything, SR)
    assert np.array_equal(a, augment_wave(x, np.random.default_rng(9), everything, SR))  # replays exactly
    assert a.shape[-1] > 0 and np.isfinite(a).all()


def test_band_limiting_in_the_draw_cuts_the_band():
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    opts = AudioAugment(p_speed=0.0, p_silence=0.0, p_gain=0.0, noise_p=0.0, p_reverb=0.0, p_eq=0.0, p_codec=0.0,
                        p_band=1.0, band_cutoff_hz=(3000.0, 3000.0), band_rates=(16000,))
    out = augment_wave(noise, np.random.default_rng(1), opts, SR)
    assert _band_energy(out, 5000, SR / 2) < 1e-4 * _band_energy(out, 300, 2500)  # 40 dB down from 5 kHz


@pytest.mark.parametrize("bad", [dict(p_codec=1.5), dict(codecs=("gsm",)), dict(p_codec=0.5, codecs=()),
                                 dict(rt60_s=(0.0, 0.5)), dict(band_rates=(0,)), dict(eq_db=(5.0, -5.0))])
def test_channel_options_are_validated(bad):
    with pytest.raises(ValueError):
        AudioAugment(**bad)


@pytest.mark.parametrize("samples", [400, 481])  # one 25 ms window at 16 kHz, and an odd length
@pytest.mark.parametrize("codec", list(C.CODECS))
def test_the_shortest_clips_and_stereo_go_through_every_step(codec, samples):
    x = (0.1 * np.random.default_rng(samples).standard_normal((2, samples))).astype(np.float32)
    for out in (C.codec_round_trip(x, SR, codec), C.through_rate(x, SR, 8000), C.lowpass(x, SR, 3000),
                C.shelf_eq(x, SR, 6.0, -6.0), C.reverberate(x, C.synthetic_rir(SR, 0.5, np.random.default_rng(0)))):
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
    silent = np.zeros(samples, np.float32)
    assert np.array_equal(C.reverberate(silent, C.synthetic_rir(SR, 0.3, np.random.default_rng(0))), silent)


# ---------------------------------------------------------------- babble from other utterances

def _write(path, wave, sr=SR):
    import soundfile

    soundfile.write(str(path), wave, sr)
    return str(path)


def test_babble_sums_talkers_at_equal_power_placed_inside_the_clip():
    from modalities.augment.audio import babble

    short, long_ = 0.5 * _tone(300, 0.25), 0.05 * _tone(700, 2.0)
    out = babble([short, long_], SR, np.random.default_rng(0))
    assert out.shape == (SR,) and out.dtype == np.float32
    spec = np.abs(np.fft.rfft(out)) ** 2  # each talker carries the same energy per sample it covers
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    e300, e700 = spec[np.abs(freqs - 300) < 20].sum(), spec[np.abs(freqs - 700) < 20].sum()
    assert e700 / e300 == pytest.approx(4.0, rel=0.15)  # the 2 s talker fills 1 s, the 0.25 s one fills 0.25 s
    quarters = (out.astype(np.float64) ** 2).reshape(4, -1).mean(axis=1)
    assert quarters.min() > 0.9  # the long talker (unit power) was cropped to fill the whole clip
    assert not babble([np.zeros(800, np.float32)], SR, np.random.default_rng(0)).any()  # silent talkers add nothing


def test_babble_in_the_draw_lands_at_the_snr_asked_for_and_replays(tmp_path):
    pool = (_write(tmp_path / "a.wav", 0.2 * _tone(900, 1.5)),)
    off = dict(p_speed=0.0, p_silence=0.0, p_gain=0.0, noise_p=0.0, p_reverb=0.0, p_eq=0.0, p_band=0.0, p_codec=0.0)
    opts = AudioAugment(**off, p_babble=1.0, babble_snr_db=(10.0, 10.0), babble_talkers=(1, 1), babble_files=pool)
    x = _tone(200, 1.0, amp=0.5)
    y = augment_wave(x, np.random.default_rng(3), opts, SR)
    added = y - x
    assert 10 * math.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2)) \
        == pytest.approx(10.0, abs=0.05)
    assert _band_energy(added, 850, 950) > 1e3 * _band_energy(added, 150, 250)  # what was added is the other talker
    assert np.array_equal(y, augment_wave(x, np.random.default_rng(3), opts, SR))
    unread = AudioAugment(**off, p_babble=1.0, babble_files=(str(tmp_path / "missing.wav"),))
    np.testing.assert_array_equal(augment_wave(x, np.random.default_rng(3), unread, SR), x)  # no talker, no harm


def test_babble_off_or_without_a_pool_draws_nothing(tmp_path):
    pool = (_write(tmp_path / "a.wav", 0.2 * _tone(900, 1.5)),)
    x = _tone(300)
    base = augment_wave(x, np.random.default_rng(8), AudioAugment(), SR)
    for opts in (AudioAugment(babble_files=pool), AudioAugment(p_babble=1.0)):
        np.testing.assert_array_equal(augment_wave(x, np.random.default_rng(8), opts, SR), base)


def test_the_babble_pool_comes_from_the_training_set_unless_a_recipe_names_one():
    from modalities.audio import Audio
    from modalities.augment.audio import babble_pool
    from modalities.speech_units import SpeechUnits

    paths = [f"audio/{i:05d}.wav" for i in range(600)]
    pool = babble_pool(paths + paths[:10], seed=0, size=256)
    assert len(pool) == len(set(pool)) == 256 and set(pool) <= set(paths)
    assert pool == babble_pool(paths, seed=0, size=256) and pool != babble_pool(paths, seed=1, size=256)
    assert babble_pool(paths[:5], seed=0) == sorted(paths[:5])
    for modality in (Audio(), SpeechUnits()):
        on = modality.augment_with_data(AudioAugment(p_babble=0.3), paths, 0)
        assert len(on.babble_files) == 256 and set(on.babble_files) <= set(paths)
        assert modality.augment_with_data(AudioAugment(), paths, 0).babble_files == ()  # off: no pool to decode
        own = AudioAugment(p_babble=0.3, babble_files=("mine.wav",))
        assert modality.augment_with_data(own, paths, 0) is own


@pytest.mark.parametrize("bad", [dict(p_babble=1.5), dict(babble_talkers=(0, 2)), dict(babble_talkers=(3, 1)),
                                 dict(babble_talkers="many"), dict(babble_snr_db=(20.0, 5.0))])
def test_babble_options_are_validated(bad):
    with pytest.raises(ValueError):
        AudioAugment(**bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("orig", "target"), [(16000, 8000), (8000, 16000), (16000, 22050), (44100, 16000)])
def test_resampling_with_the_filter_designed_once_equals_scipys_default_bit_for_bit(dtype, orig, target):
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal((2, 4000)).astype(dtype)
    g = math.gcd(orig, target)
    want = resample_poly(x, target // g, orig // g, axis=-1).astype(np.float32)
    for _ in range(2):  # the second call reads the cached filter
        assert np.array_equal(C._resample_poly(x, orig, target), want)


def test_lowpass_designs_each_filter_once_and_filters_as_scipys_own_design():
    from scipy.signal import butter, sosfilt
    x = np.random.default_rng(3).standard_normal(SR).astype(np.float32)
    C._butter_lowpass.cache_clear()
    first, again = C.lowpass(x, SR, 4210.0), C.lowpass(x, SR, 4210.0)
    expected = sosfilt(butter(8, 4210.0, btype="low", fs=SR, output="sos"), x, axis=-1).astype(np.float32)
    assert np.array_equal(first, expected) and np.array_equal(again, expected)
    assert C._butter_lowpass.cache_info().misses == 1 and C._butter_lowpass.cache_info().hits == 1


def test_augmentation_draws_band_limit_cutoffs_on_a_10_hz_grid(monkeypatch):
    seen: list[float] = []
    monkeypatch.setattr("modalities.augment.audio.lowpass", lambda w, sr, cutoff: seen.append(cutoff) or w)
    opts = AudioAugment(p_band=1.0)
    for seed in range(20):
        augment_wave(_tone(440.0), np.random.default_rng(seed), opts, SR)
    assert len(seen) == 20 and len(set(seen)) > 10
    assert all(3000 <= c <= 8000 and c % 10 == 0 for c in seen)
