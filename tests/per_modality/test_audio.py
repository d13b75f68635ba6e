"""The audio modality: ImageBind-exact clips and fbanks, length policies, resampling, bad files."""
from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torchaudio
from samplegen import MAKERS
from samplegen_audio import chirp, write_wav

from binder.errors import ModalityError
from binder.registry import modality_for_path
from modalities.audio import Audio, AudioOptions, clip_bounds, clip_starts, fbank_clips

SR = 16000
PAD_VALUE = ((torch.zeros(()) - AudioOptions.mean) / AudioOptions.std).item()  # zero fbank frame, normalized
# ImageBind's preprocessing exactly (what the imagebind-* presets set).
IB = {"clip_select": "even", "trim_silence": False}


def imagebind_reference(wave: torch.Tensor, opts: AudioOptions | None = None) -> torch.Tensor:
    """ImageBind's load_and_transform_audio_data after loading, transcribed loop for loop."""
    opts = opts or AudioOptions()
    waveform = wave.clone()[None]
    duration = waveform.size(1) / opts.sample_rate
    clip = Fraction(opts.clip_duration)
    step = Fraction(Fraction(max(duration - clip, 0)), opts.clips)
    out = []
    for i in range(opts.clips):
        start, end = step * i, step * i + clip
        part = waveform[:, int(start * opts.sample_rate): int(end * opts.sample_rate)]
        part -= part.mean()  # in place on a view, as ImageBind does
        fb = torchaudio.compliance.kaldi.fbank(
            part, htk_compat=True, sample_frequency=opts.sample_rate, use_energy=False, window_type="hanning",
            num_mel_bins=opts.num_mel_bins, dither=0.0, frame_length=25, frame_shift=10).transpose(0, 1)
        p = opts.target_length - fb.size(1)
        fb = torch.nn.functional.pad(fb, (0, p)) if p > 0 else fb[:, : opts.target_length]
        out.append((fb[None] - opts.mean) / opts.std)
    return torch.stack(out)


@pytest.mark.parametrize("n", [4000, 9600, 31999, 32000, 5 * SR + 123, 10 * SR])
def test_fbank_clips_match_imagebind_reference(n):
    g = torch.Generator().manual_seed(n)
    t = torch.arange(n) / SR
    wave = 0.3 * torch.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * torch.randn(n, generator=g) + 0.02
    ours = fbank_clips(wave.float(), AudioOptions(**IB))
    assert ours.shape == (3, 1, 128, 204)
    torch.testing.assert_close(ours, imagebind_reference(wave.float()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seconds", [0.6, 2.0, 3.0, 5.5, 7.3])
def test_clip_starts_follow_constant_clips_per_video_sampler(seconds):
    n = int(seconds * SR)
    max_start = max(n / SR - 2.0, 0)
    starts = clip_starts(n, AudioOptions())
    assert [float(s) for s in starts] == pytest.approx([max_start / 3 * i for i in range(3)], abs=1e-12)
    assert clip_bounds(n, AudioOptions()) == [(int(s * SR), min(int((s + 2) * SR), n)) for s in starts]


def test_clips_cover_the_sampled_windows_only():
    # 8 s: clips start at 0, 2, 4 s; a tone at 4.5-5.5 s is heard by the last clip alone,
    # and one at 6.5-7.5 s by none (the sampler never reaches the final 2 s).
    wave = np.zeros(8 * SR, dtype=np.float32)
    t = np.arange(SR) / SR
    wave[int(4.5 * SR): int(5.5 * SR)] = np.sin(2 * np.pi * 1000 * t)
    loud = fbank_clips(torch.from_numpy(wave), AudioOptions())[..., :198].amax(dim=(1, 2, 3))  # real frames
    assert loud[2] > loud[0] + 1 and loud[2] > loud[1] + 1
    late = np.zeros_like(wave)
    late[int(6.5 * SR): int(7.5 * SR)] = np.sin(2 * np.pi * 1000 * t)
    assert torch.equal(fbank_clips(torch.from_numpy(late), AudioOptions()),
                       fbank_clips(torch.zeros(8 * SR), AudioOptions()))


def test_sample_file_shape_and_tokens(tmp_path):
    audio = Audio()
    x = audio.prepare(MAKERS["audio"](tmp_path))
    assert x.shape == audio.input_shape() == (3, 1, 128, 204)
    assert torch.isfinite(x).all() and x.std() > 0.1
    tok = audio.build_tokenizer(audio.options, width=32)
    assert tok(x).shape == (3, 1 + 12 * 19, 32)
    assert audio.build_tokenizer(Audio().options, 32).proj.stride == (10, 10)


@pytest.mark.parametrize("policy", ["pad", "repeat"])
def test_short_clip_is_accepted_without_warnings(tmp_path, policy):
    path = write_wav(tmp_path / "short.wav", chirp(0.6, SR), SR)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = Audio(short_policy=policy, **IB).prepare(path)[0, 0]
    real = 1 + (int(0.6 * SR) - 400) // 160  # 58 kaldi frames in 0.6 s
    if policy == "pad":
        assert torch.all(x[:, real:] == PAD_VALUE) and not torch.any(x[:, :real] == PAD_VALUE)
    else:
        assert not torch.any(x[:, :198] == PAD_VALUE) and torch.all(x[:, 198:] == PAD_VALUE)
        torch.testing.assert_close(x[:, :60], x[:, 60:120], atol=1e-3, rtol=0)  # 0.6 s = 60 frames


def test_resamples_44k_to_16k(tmp_path):
    t = np.arange(44100) / 44100
    path = write_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), 44100)
    wave = Audio().load(path)
    assert wave.dtype == np.float32 and wave.shape == (SR,)
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * SR / wave.size
    assert abs(peak_hz - 1000) <= 2


def test_stereo_is_averaged_to_mono(tmp_path):
    t = np.arange(SR) / SR
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = write_wav(tmp_path / "st.wav", np.stack([left, 0.5 * left], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(Audio().load(path), 0.75 * left, atol=1e-6)


def _bad_files(d):
    good = write_wav(d / "good.wav", chirp(1.0, SR), SR).read_bytes()
    (d / "empty.wav").write_bytes(b"")
    (d / "truncated.wav").write_bytes(good[:44 + 6])
    (d / "text.wav").write_text("this is not audio, just a renamed text file\n" * 20)
    nan = chirp(1.0, SR)
    nan[100:110] = np.nan
    write_wav(d / "nan.wav", nan, SR, subtype="FLOAT")
    write_wav(d / "tiny.wav", chirp(0.01, SR), SR)  # under one 25 ms window
    return ["empty.wav", "truncated.wav", "text.wav", "nan.wav", "tiny.wav", "missing.wav"]


def test_bad_files_raise_modality_error_naming_the_file(tmp_path):
    reasons = {}
    for name in _bad_files(tmp_path):
        path = tmp_path / name
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ModalityError) as info:
                Audio().prepare(path)
        assert info.value.path == str(path) and str(path) in str(info.value)
        reasons[name] = info.value.reason
    assert "empty" in reasons["empty.wav"]
    assert "NaN" in reasons["nan.wav"]
    assert "shorter than min_duration" in reasons["tiny.wav"]
    assert "decode" in reasons["text.wav"]


def test_options_validate_and_registry_routes_extensions():
    with pytest.raises(ValueError, match="short_policy"):
        Audio(short_policy="loop")
    assert modality_for_path("a/b/song.WAV") == "audio"
    assert modality_for_path("x.flac") == "audio"
    assert "pad" in Audio().describe()


def test_silence_trimming_cuts_leading_and_trailing_silence():
    from modalities.audio import trim_silence

    sr = 16000
    t = np.arange(sr // 2) / sr
    word = (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    padded = np.concatenate([np.zeros(sr, np.float32), word, np.zeros(2 * sr, np.float32)])
    kept = trim_silence(padded, sr, top_db=40, min_keep=0.25)
    assert abs(len(kept) - len(word)) <= 512 and np.max(np.abs(kept[:512])) > 0.1
    silent = np.zeros(sr, np.float32)
    assert trim_silence(silent, sr, 40, 0.25) is silent  # nothing to measure against: kept whole
    blip = np.zeros(sr, np.float32)
    blip[8000:8040] = 0.5
    assert len(trim_silence(blip, sr, 40, 0.25)) == 4000  # widened to min_keep around the sound


def test_trimming_is_on_for_anybind_models_and_off_in_imagebind_presets():
    from binder.presets import preset_config

    assert Audio().options.trim_silence
    ib = preset_config("imagebind-test").modality("audio")
    assert Audio(**ib.options).options.trim_silence is False


def test_leading_silence_no_longer_moves_the_features():
    sr = 16000
    t = np.arange(sr // 2) / sr
    word = (0.4 * np.sin(2 * np.pi * 300 * t) * np.hanning(len(t))).astype(np.float32)
    late = np.concatenate([np.zeros(sr, np.float32), word])
    trim, keep = Audio(clips=1, clip_duration=1.5), Audio(clips=1, clip_duration=1.5, trim_silence=False)
    near = (trim.preprocess(word) - trim.preprocess(late)).abs().mean()
    far = (keep.preprocess(word) - keep.preprocess(late)).abs().mean()
    assert near < 0.1 * far


def test_one_clip_is_taken_where_the_sound_is():
    from modalities.audio import AudioOptions, loudest_clip

    sr, opts = 16000, AudioOptions(clips=1, clip_duration=1.0)
    wave = torch.zeros(1, 4 * sr)
    t = torch.arange(int(0.4 * sr)) / sr
    wave[0, int(2.5 * sr):int(2.9 * sr)] = 0.5 * torch.sin(2 * torch.pi * 440 * t)  # the only sound, late
    (start, end), = loudest_clip(wave, opts)
    assert end - start == sr and start <= int(2.5 * sr) and end >= int(2.9 * sr)
    assert loudest_clip(torch.zeros(1, sr // 2), opts) is None  # shorter than a clip: nothing to choose
    audio = Audio(clips=1, clip_duration=1.0, trim_silence=False)
    assert torch.allclose(audio.preprocess(wave[0].numpy()), audio.preprocess(wave[0, start:end].numpy()), atol=1e-5)
    even = Audio(clips=1, clip_duration=1.0, trim_silence=False, clip_select="even")
    assert not torch.allclose(audio.preprocess(wave[0].numpy()), even.preprocess(wave[0].numpy()), atol=1e-2)



@pytest.mark.parametrize("mode", ["cmn", "cmvn"])
def test_utterance_normalization_removes_a_fixed_gain_and_centres_each_bin(mode):
    opts = AudioOptions(normalize=mode, clips=1, num_mel_bins=32)
    wave = torch.from_numpy(chirp(0.8, SR))  # shorter than a clip: real frames, then padding
    x = fbank_clips(wave, opts)[0, 0]  # (mels, frames)
    real = 1 + (int(0.8 * SR) - 400) // 160
    assert torch.all(x[:, real:] == 0)  # padding sits at the normalized mean
    torch.testing.assert_close(x[:, :real].mean(dim=1), torch.zeros(32), atol=1e-4, rtol=0)
    louder = fbank_clips(wave * 0.1, opts)[0, 0]  # -20 dB: a constant shift of every log-mel bin
    torch.testing.assert_close(louder, x, atol=2e-3, rtol=0)
    if mode == "cmvn":
        std = x[:, :real].std(dim=1, unbiased=False)  # 1, or below 1 where the bin's own std is under the floor
        assert torch.all(std < 1 + 1e-3) and (std > 1 - 1e-3).sum() >= 16
    assert not torch.allclose(fbank_clips(wave, AudioOptions(clips=1, num_mel_bins=32))[0, 0], x)


def test_pcen_is_near_blind_to_level_where_the_log_mel_is_not():
    opts = AudioOptions(normalize="pcen", clips=1, num_mel_bins=32)
    wave = torch.from_numpy(chirp(0.8, SR))
    x = fbank_clips(wave, opts)[0, 0]
    real = 1 + (int(0.8 * SR) - 400) // 160
    assert torch.isfinite(x).all() and torch.all(x[:, real:] == 0) and x[:, :real].abs().sum() > 0
    quieter = fbank_clips(wave * 0.1, opts)[0, 0]  # -20 dB
    moved = float((quieter - x)[:, :real].norm() / x[:, :real].norm())
    plain = AudioOptions(clips=1, num_mel_bins=32)
    log_moved = float((fbank_clips(wave * 0.1, plain)[0, 0] - fbank_clips(wave, plain)[0, 0])[:, :real].norm()
                      / fbank_clips(wave, plain)[0, 0][:, :real].norm())
    assert moved < 0.1 < log_moved


def test_normalize_is_validated():
    with pytest.raises(ValueError, match="normalize"):
        Audio(normalize="per-speaker")


# --- the fast paths of load: integer PCM read as integers, torchaudio's filter on its live taps ----------

@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("FLAC", "PCM_16"),
                                          ("FLAC", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8")])
@pytest.mark.parametrize("channels", [1, 2])
def test_decoding_gives_the_floats_librosa_load_gives(tmp_path, fmt, subtype, channels):
    import librosa
    import soundfile

    rng = np.random.default_rng(channels)
    samples = np.clip(rng.standard_normal((3000, channels)) * 0.4, -1.0, 1.0)
    samples[0], samples[1] = -1.0, 0.99997  # full scale both ways
    path = tmp_path / f"x.{fmt.lower()}"
    soundfile.write(path, samples, 22050, subtype=subtype, format=fmt)
    expected, _ = librosa.load(path, sr=None, mono=False)  # what load decoded before (libsndfile's floats)
    wave = Audio(sample_rate=22050, channel="first").load(path)  # native rate: nothing resampled
    assert wave.dtype == np.float32 and wave.flags.c_contiguous
    np.testing.assert_array_equal(wave, expected)


def test_integer_pcm_is_still_range_checked_below_full_scale(tmp_path):
    path = write_wav(tmp_path / "loud.wav", 0.9 * np.sin(np.linspace(0, 200, SR)), SR)
    assert Audio(max_abs=1.0).load(path).shape == (SR,)
    with pytest.raises(ModalityError, match="out of range"):
        Audio(max_abs=0.5).load(path)


@pytest.mark.parametrize("orig", [44100, 22050, 11025, 88200, 48000, 8000])
@pytest.mark.parametrize("n", [1, 441, 4417, 3 * 44100 + 123])
def test_resample_equals_torchaudio_resample(orig, n):
    """Phase groups (44.1, 22.05, 11.025, 88.2 kHz) and the dense convolution (48, 8 kHz) alike."""
    from modalities.resample import resample

    wave = 0.5 * torch.randn(2, n, generator=torch.Generator().manual_seed(n))
    expected = torchaudio.functional.resample(wave, orig, SR)
    out = resample(wave, orig, SR)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(resample(wave[0], orig, SR), expected[0], atol=1e-6, rtol=0)
