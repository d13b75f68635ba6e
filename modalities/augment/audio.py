"""Training-time augmentations of decoded audio (float32 waveforms) and of its fbank tensors.

Every function is pure: it never changes its input, and all randomness comes from the numpy
``Generator`` it is given, so an augmented item is a function of (raw, rng state, options) and
a run seeded by (seed, step, item) replays bit for bit. Waveforms are laid out as the audio
modality's ``load()`` returns them: ``(samples,)`` mono or ``(channels, samples)``, float32, at
the modality's sample rate; every function returns that same layout.

``augment_wave`` draws a composition (speed, pitch, shift or crop, leading/trailing silence,
gain, additive noise) from an :class:`AudioAugment`; ``mask_spectrogram`` applies SpecAugment
time/frequency masks to the preprocessed fbank tensor.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from binder.config import path_option
from binder.errors import ConfigError
from modalities.augment.channel import (
    CODECS,
    codec_round_trip,
    lowpass,
    reverberate,
    shelf_eq,
    synthetic_rir,
    through_rate,
)
from modalities.augment.checks import check_probability, check_range

NOISE_COLORS = ("white", "pink", "brown")
NOISE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")
_COLOR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
_NOISE_CACHE: dict[tuple[str, int], np.ndarray] = {}  # (file, sample rate) -> decoded mono noise
BAND_RATES = (8000, 11025, 16000)  # telephone, old recorders, wideband
_SILENT_POWER = 1e-12  # mean square below this is treated as a silent signal


@dataclass(frozen=True)
class AudioAugment:
    """What ``augment_wave`` may do to a waveform, and how often; ranges are (low, high), drawn uniformly.

    Defaults aim at real recordings from a clean training set: speakers of other pitch and
    rate (speed ±10 %, pitch ±2 semitones), start anywhere (shift up to 0.5 s, silence up to
    2 s each side), any recording level (gain -12..+6 dB) and noise down to 5 dB SNR.
    ``noise_dir`` adds real noise files (read once, cached) next to the synthetic colours,
    chosen with probability ``noise_file_p``. ``crop_s`` cuts a random window of that many
    seconds out of longer audio. ``warp`` stretches the mel axis of the fbank (with probability
    ``p_warp``): a vocal-tract-length perturbation that moves formants as another speaker's would.
    Room, microphone and channel (``modalities.augment.channel``): reverberation in a synthetic room
    (``p_reverb``; RT60 ``rt60_s``, direct-to-reverberant ratio ``drr_db``), a microphone's low and
    high shelves (``p_eq``, each drawn from ``eq_db``), band limiting (``p_band``: a low-pass at a
    cutoff drawn from ``band_cutoff_hz`` to the nearest 10 Hz, then a round trip through a rate of ``band_rates``) and a
    lossy codec round trip (``p_codec``, one of ``codecs``). An option at 0 draws nothing, so a
    recipe that turns all four off replays exactly as before they existed.
    SpecAugment masks (``time_masks`` bands of up to
    ``time_mask_frames`` frames, ``freq_masks`` bands of up to ``freq_mask_bins`` mel bins) are
    applied by ``mask_spectrogram`` to the fbank, filled with ``mask_fill`` ("zero" or "mean").
    """

    enabled: bool = True
    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.0  # off by default: ~13 ms per item on a CPU core; speed perturbation moves pitch too
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    crop_s: float | None = None
    p_shift: float = 0.0  # off by default: a shift crops the far end of the sound; silence padding moves the onset
    max_shift_s: float = 0.5
    p_silence: float = 0.2
    silence_max_s: float = 1.0
    silence_floor_db: float | None = -70.0
    p_gain: float = 0.8
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_p: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_colors: tuple[str, ...] = NOISE_COLORS
    noise_dir: str | None = path_option()  # a recipe's relative folder resolves against the recipe
    noise_file_p: float = 0.5
    # room, microphone and line: chosen on val and on real speech (docs/guides/real-recordings.md)
    p_reverb: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    p_eq: float = 0.5
    eq_db: tuple[float, float] = (-10.0, 10.0)
    p_band: float = 0.5
    band_cutoff_hz: tuple[float, float] = (3000.0, 8000.0)
    band_rates: tuple[int, ...] = BAND_RATES
    p_codec: float = 0.3
    codecs: tuple[str, ...] = tuple(CODECS)
    p_babble: float = 0.0
    babble_snr_db: tuple[float, float] = (5.0, 20.0)
    babble_talkers: tuple[int, int] = (1, 3)
    babble_files: tuple[str, ...] = ()
    p_warp: float = 0.0  # off by default: measured on val, it cost clean and noisy accuracy (docs/guides/training.md)
    warp: tuple[float, float] = (0.9, 1.1)
    time_masks: int = 2
    time_mask_frames: int = 12
    freq_masks: int = 2
    freq_mask_bins: int = 6
    mask_fill: str = "zero"

    def __post_init__(self) -> None:
        for name in ("speed", "pitch_semitones", "gain_db", "snr_db", "warp", "rt60_s", "drr_db", "eq_db",
                     "band_cutoff_hz", "babble_snr_db"):
            object.__setattr__(self, name, check_range(name, getattr(self, name)))
        object.__setattr__(self, "noise_colors", tuple(self.noise_colors))
        for name in ("p_speed", "p_pitch", "p_shift", "p_silence", "p_gain", "noise_p", "noise_file_p", "p_warp",
                     "p_reverb", "p_eq", "p_band", "p_codec", "p_babble"):
            check_probability(name, getattr(self, name))
        self._check_channel()
        self._check_babble()
        for name in ("speed", "warp"):
            if getattr(self, name)[0] <= 0:
                raise ConfigError(f"AudioAugment.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_shift_s", "silence_max_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AudioAugment.{name} must be >= 0, got {getattr(self, name)}")
        if self.crop_s is not None and self.crop_s <= 0:
            raise ConfigError(f"AudioAugment.crop_s must be > 0 or None, got {self.crop_s}")
        bad = [c for c in self.noise_colors if c not in NOISE_COLORS]
        if bad or (self.noise_p > 0 and not self.noise_colors and self.noise_dir is None):
            raise ConfigError(f"AudioAugment.noise_colors must be a non-empty subset of {NOISE_COLORS}, "
                             f"got {self.noise_colors}")
        if self.noise_dir is not None and not Path(self.noise_dir).is_dir():
            raise ConfigError(f"AudioAugment.noise_dir {self.noise_dir!r} is not a folder")
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"AudioAugment.{name} must be >= 0, got {getattr(self, name)}")
        if self.mask_fill not in ("zero", "mean"):
            raise ConfigError(f"AudioAugment.mask_fill must be 'zero' or 'mean', got {self.mask_fill!r}")


    def _check_channel(self) -> None:
        object.__setattr__(self, "band_rates", tuple(int(r) for r in self.band_rates))
        object.__setattr__(self, "codecs", tuple(self.codecs))
        if self.rt60_s[0] <= 0 or self.band_cutoff_hz[0] <= 0:
            raise ConfigError(f"AudioAugment.rt60_s and band_cutoff_hz must be > 0, got {self.rt60_s}, "
                             f"{self.band_cutoff_hz}")
        if (self.p_band > 0 and not self.band_rates) or any(r <= 0 for r in self.band_rates):
            raise ConfigError(f"AudioAugment.band_rates must be positive sample rates, got {self.band_rates}")
        bad = [c for c in self.codecs if c not in CODECS]
        if bad or (self.p_codec > 0 and not self.codecs):
            raise ConfigError(f"AudioAugment.codecs must be a non-empty subset of {tuple(CODECS)}, got {self.codecs}")


    def _check_babble(self) -> None:
        object.__setattr__(self, "babble_files", tuple(str(f) for f in self.babble_files))
        try:
            low, high = (int(v) for v in self.babble_talkers)
        except (TypeError, ValueError):
            raise ConfigError(f"AudioAugment.babble_talkers must be a (low, high) pair of counts, "
                             f"got {self.babble_talkers!r}") from None
        if not 1 <= low <= high:
            raise ConfigError(f"AudioAugment.babble_talkers must satisfy 1 <= low <= high, got {self.babble_talkers!r}")
        object.__setattr__(self, "babble_talkers", (low, high))

    def with_babble(self, files: Sequence[str | os.PathLike]) -> AudioAugment:
        """These options with ``files`` as the babble pool, unless babble is off or a pool was given.

        A trainer passes the other utterances of the training set, so "babble from other talkers"
        needs no configuration; a recipe that names ``babble_files`` keeps its own.
        """
        if self.p_babble <= 0 or self.babble_files:
            return self
        return dataclasses.replace(self, babble_files=tuple(os.fspath(f) for f in files))


BABBLE_POOL = 256  # training utterances a babble pool holds: decoded once per worker, ~25 MB at 16 kHz


def babble_pool(paths: Sequence[str], seed: int, size: int = BABBLE_POOL) -> list[str]:
    """Up to ``size`` distinct files of ``paths`` drawn by ``seed``: the other talkers babble mixes in."""
    unique = sorted(set(paths))
    if len(unique) <= size:
        return unique
    picks = np.random.default_rng([int(seed), zlib.crc32(b"babble")]).choice(len(unique), size=size, replace=False)
    return [unique[int(i)] for i in sorted(picks)]


def _f32(wave: np.ndarray) -> np.ndarray:
    return np.asarray(wave, dtype=np.float32)


# ---------------------------------------------------------------- time axis


def shift(wave: np.ndarray, shift_samples: int) -> np.ndarray:
    """Delay (positive) or advance (negative) the audio by ``shift_samples``, keeping its length.

    The vacated side is filled with silence and the other side is cropped; nothing wraps
    around, because a circular roll would glue the end of a recording onto its start.
    """
    wave = _f32(wave)
    n = wave.shape[-1]
    k = int(np.clip(shift_samples, -n, n))
    out = np.zeros_like(wave)
    if k >= 0:
        out[..., k:] = wave[..., : n - k]
    else:
        out[..., : n + k] = wave[..., -k:]
    return out


def crop(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    """The window ``[start, start + length)`` of the audio (clamped to the recording), as a copy."""
    wave = _f32(wave)
    start = int(np.clip(start, 0, max(wave.shape[-1] - length, 0)))
    return wave[..., start:start + length].copy()


def add_silence(wave: np.ndarray, lead_samples: int, trail_samples: int, rng: np.random.Generator | None = None,
                floor_db: float | None = None) -> np.ndarray:
    """Pad ``lead_samples`` before and ``trail_samples`` after the audio, as real takes have.

    The padding is digital silence, or, with ``floor_db`` and an ``rng``, a Gaussian noise floor
    of that RMS level in dBFS (e.g. -70), which is what a real microphone records between words.
    """
    wave = _f32(wave)
    pad = [(0, 0)] * (wave.ndim - 1) + [(max(int(lead_samples), 0), max(int(trail_samples), 0))]
    out = np.pad(wave, pad)
    if floor_db is not None and rng is not None:
        level = np.float32(10.0 ** (floor_db / 20.0))
        lead, trail = pad[-1]
        if lead:
            out[..., :lead] = rng.standard_normal(out[..., :lead].shape, dtype=np.float32) * level
        if trail:
            out[..., -trail:] = rng.standard_normal(out[..., -trail:].shape, dtype=np.float32) * level
    return out


# ---------------------------------------------------------------- level and noise


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale the audio by ``gain_db`` decibels (the RMS changes by exactly that many dB)."""
    return _f32(wave) * np.float32(10.0 ** (gain_db / 20.0))


def colored_noise(shape: tuple[int, ...], rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """Zero-mean, unit-power noise whose power spectrum falls as 1/f**0 (white), 1/f (pink) or 1/f**2 (brown).

    A white Gaussian spectrum is shaped in the frequency domain (amplitude ~ f**(-exponent/2))
    with the DC bin removed, then brought back to the time axis and normalised to unit power.
    """
    if color not in _COLOR_EXPONENT:
        raise ConfigError(f"noise color must be one of {NOISE_COLORS}, got {color!r}")
    n = int(shape[-1])
    white = rng.standard_normal(shape)
    exponent = _COLOR_EXPONENT[color]
    if exponent and n > 1:
        spectrum = np.fft.rfft(white, axis=-1)
        freqs = np.fft.rfftfreq(n)
        scale = np.zeros_like(freqs)
        scale[1:] = freqs[1:] ** (-exponent / 2.0)
        white = np.fft.irfft(spectrum * scale, n=n, axis=-1)
    white = white - white.mean(axis=-1, keepdims=True)
    power = float(np.mean(white ** 2))
    return (white / math.sqrt(power) if power > 0 else white).astype(np.float32)


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float, signal_power: float | None = None) -> np.ndarray:
    """``wave + noise`` with the noise scaled so 10·log10(P / mean(noise²)) = ``snr_db``.

    P is ``signal_power`` when given (the level of the sound itself, before silence was added
    around it, as speech SNR is usually defined), else mean(wave²) over the whole clip (all
    channels). A silent wave is returned unchanged: its SNR is undefined.
    """
    wave = _f32(wave)
    noise = np.broadcast_to(_f32(noise), wave.shape)
    if signal_power is None:
        signal_power = float(np.mean(wave.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if signal_power < _SILENT_POWER or noise_power <= 0:
        return wave.copy()
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (wave + noise * np.float32(scale)).astype(np.float32)


NOISE_BANK_SAMPLES = 1 << 19  # about 33 s at 16 kHz of each color, made once per process


@functools.lru_cache(maxsize=len(_COLOR_EXPONENT))
def _noise_bank(color: str) -> np.ndarray:
    """A long fixed stretch of ``color`` noise (seeded by the color's name): a constant, not a draw."""
    return colored_noise((NOISE_BANK_SAMPLES,), np.random.default_rng(zlib.crc32(color.encode())), color)


def synthetic_noise(shape: tuple[int, ...], rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """Unit-power ``color`` noise of ``shape``: random excerpts (offset and sign drawn from ``rng``) of a
    fixed noise bank, one per channel. An excerpt of shaped noise keeps its spectral slope, and this
    costs a copy instead of an FFT of the whole clip; clips longer than the bank are shaped directly."""
    if color not in _COLOR_EXPONENT:
        raise ConfigError(f"noise color must be one of {NOISE_COLORS}, got {color!r}")
    n = int(shape[-1])
    if n > NOISE_BANK_SAMPLES // 2:
        return colored_noise(shape, rng, color)
    bank = _noise_bank(color)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    starts = rng.integers(0, NOISE_BANK_SAMPLES - n + 1, size=rows)
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=rows)
    out = np.stack([bank[s:s + n] * g for s, g in zip(starts, signs)])
    out -= out.mean(axis=-1, keepdims=True)
    power = np.sqrt(np.mean(out.astype(np.float64) ** 2, axis=-1, keepdims=True))
    out = (out / np.maximum(power, 1e-12)).astype(np.float32)
    return out.reshape(shape)


def add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float, color: str = "white",
              signal_power: float | None = None) -> np.ndarray:
    """Add synthetic white, pink or brown noise drawn from ``rng`` at ``snr_db`` (see ``mix_at_snr``)."""
    return mix_at_snr(wave, synthetic_noise(np.shape(wave), rng, color), snr_db, signal_power)


def noise_files(noise_dir: str | os.PathLike) -> list[Path]:
    """Audio files under ``noise_dir`` (recursively), sorted so a seed always picks the same file."""
    root = Path(noise_dir)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in NOISE_EXTENSIONS)


def load_noise(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """A noise file decoded to mono float32 at ``sample_rate``; decoded once per process, then cached.

    soundfile reads wav/flac/ogg; anything else goes through librosa (audioread/ffmpeg).
    """
    key = (os.fspath(path), int(sample_rate))
    cached = _NOISE_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        import soundfile

        data, native_sr = soundfile.read(key[0], dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    except Exception:  # soundfile does not know the format: fall back to librosa's decoders
        import librosa

        data, native_sr = librosa.load(key[0], sr=None, mono=True)
    if native_sr != sample_rate and data.size:
        data = _resample(data, native_sr, sample_rate)
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    if data.size == 0:
        raise ConfigError(f"noise file {key[0]} holds no samples")
    _NOISE_CACHE[key] = data
    return data


def noise_excerpt(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``length``-sample window of a mono noise recording, looped end to end when it is shorter."""
    if noise.size < length:
        noise = np.tile(noise, -(-length // noise.size))
    start = int(rng.integers(0, noise.size - length + 1))
    return noise[start:start + length].astype(np.float32)


# ---------------------------------------------------------------- speed and pitch


def _resample(wave: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Band-limited resampling along the last axis (soxr)."""
    import soxr

    wave = _f32(wave)
    if wave.ndim == 1:
        return soxr.resample(wave, orig_sr, target_sr).astype(np.float32)
    flat = wave.reshape(-1, wave.shape[-1])
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, target_sr).T
    return np.ascontiguousarray(out, dtype=np.float32).reshape(*wave.shape[:-1], -1)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play the audio ``factor`` times faster (Kaldi/sox speed perturbation).

    The samples are resampled as if recorded at ``factor``·sr, so length becomes ``n / factor``
    and every frequency is multiplied by ``factor``: tempo and pitch change together, like a
    different speaker rate.
    """
    if factor <= 0:
        raise ConfigError(f"speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return _f32(wave).copy()
    return _resample(wave, 16000.0 * factor, 16000.0)


def pitch_shift(wave: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Move every frequency by ``semitones`` while keeping the duration (librosa's phase vocoder + resampling).

    About 6 ms for 1.5 s of 16 kHz audio on one core (the first call in a process also pays
    librosa's import, ~2-3 s). Audio shorter than one 2048-sample STFT frame is returned unchanged.
    """
    import librosa

    wave = _f32(wave)
    if semitones == 0 or wave.shape[-1] < 2048:
        return wave.copy()
    out = librosa.effects.pitch_shift(wave, sr=sample_rate, n_steps=float(semitones), res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


# ---------------------------------------------------------------- the draw


def augment_wave(wave: np.ndarray, rng: np.random.Generator, opts: AudioAugment, sample_rate: int) -> np.ndarray:
    """A random variation of a decoded waveform drawn from ``opts``: speed, pitch, crop or shift,
    leading/trailing silence, gain, then noise (last, so added silence carries the noise too).

    Every step is drawn from ``rng`` in a fixed order, so the result replays exactly.
    """
    original = wave = _f32(wave)
    if not opts.enabled:
        return wave.copy()
    level = float(np.mean(wave.astype(np.float64) ** 2))  # the sound's own level, before any silence
    if rng.random() < opts.p_speed:
        wave = speed_perturb(wave, rng.uniform(*opts.speed))
    if rng.random() < opts.p_pitch:
        wave = pitch_shift(wave, sample_rate, rng.uniform(*opts.pitch_semitones))
    if opts.crop_s is not None and wave.shape[-1] > int(opts.crop_s * sample_rate):
        length = int(opts.crop_s * sample_rate)
        wave = crop(wave, int(rng.integers(0, wave.shape[-1] - length + 1)), length)
    if rng.random() < opts.p_shift:
        limit = min(int(opts.max_shift_s * sample_rate), wave.shape[-1] - 1)
        wave = shift(wave, int(rng.integers(-limit, limit + 1)) if limit > 0 else 0)
    if opts.p_reverb > 0 and rng.random() < opts.p_reverb:
        rir = synthetic_rir(sample_rate, rng.uniform(*opts.rt60_s), rng, rng.uniform(*opts.drr_db))
        wave = reverberate(wave, rir)
    if rng.random() < opts.p_silence:
        most = int(opts.silence_max_s * sample_rate)
        lead, trail = (int(v) for v in rng.integers(0, most + 1, size=2))
        wave = add_silence(wave, lead, trail, rng, opts.silence_floor_db)
    if rng.random() < opts.p_gain:
        gain = rng.uniform(*opts.gain_db)
        wave, level = apply_gain(wave, gain), level * 10.0 ** (gain / 10.0)
    if opts.p_babble > 0 and opts.babble_files and rng.random() < opts.p_babble:
        wave = _draw_babble(wave, rng, opts, sample_rate, level)
    if rng.random() < opts.noise_p:
        wave = _draw_noise(wave, rng, opts, sample_rate, level)
    wave = _draw_channel(wave, rng, opts, sample_rate)
    return wave.copy() if np.shares_memory(wave, original) else wave


def _draw_channel(wave: np.ndarray, rng: np.random.Generator, opts: AudioAugment, sample_rate: int) -> np.ndarray:
    """The microphone, then the line: shelving EQ, band limiting, a codec (each only when its p > 0)."""
    if opts.p_eq > 0 and rng.random() < opts.p_eq:
        wave = shelf_eq(wave, sample_rate, rng.uniform(*opts.eq_db), rng.uniform(*opts.eq_db))
    if opts.p_band > 0 and rng.random() < opts.p_band:
        # the cutoff on a 10 Hz grid (no ear or model tells 10 Hz apart at 3-8 kHz), so filter designs repeat and cache
        wave = lowpass(wave, sample_rate, round(rng.uniform(*opts.band_cutoff_hz), -1))
        wave = through_rate(wave, sample_rate, opts.band_rates[int(rng.integers(len(opts.band_rates)))])
    if opts.p_codec > 0 and rng.random() < opts.p_codec:
        wave = codec_round_trip(wave, sample_rate, opts.codecs[int(rng.integers(len(opts.codecs)))])
    return wave


def _draw_noise(wave: np.ndarray, rng: np.random.Generator, opts: AudioAugment, sample_rate: int,
                level: float) -> np.ndarray:
    """Noise at a drawn SNR relative to ``level``, the sound's power before silence was added."""
    snr = rng.uniform(*opts.snr_db)
    files = noise_files(opts.noise_dir) if opts.noise_dir is not None else []
    if files and (not opts.noise_colors or rng.random() < opts.noise_file_p):
        source = load_noise(files[int(rng.integers(len(files)))], sample_rate)
        return mix_at_snr(wave, noise_excerpt(source, wave.shape[-1], rng), snr, level)
    color = opts.noise_colors[int(rng.integers(len(opts.noise_colors)))]
    return add_noise(wave, rng, snr, color, level)


def babble(utterances: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Other talkers speaking at once: each utterance at equal power, placed at a random offset in (or
    cropped to a random window of) ``length`` samples, summed. Mono float32; all zeros when every
    utterance is silent."""
    out = np.zeros(length, dtype=np.float32)
    for voice in utterances:
        voice = _f32(voice).reshape(-1)
        power = float(np.mean(voice.astype(np.float64) ** 2)) if voice.size else 0.0
        if power < _SILENT_POWER:
            continue
        voice = voice / np.float32(math.sqrt(power))
        if voice.size >= length:
            start = int(rng.integers(0, voice.size - length + 1))
            out += voice[start:start + length]
        else:
            start = int(rng.integers(0, length - voice.size + 1))
            out[start:start + voice.size] += voice
    return out


def _draw_babble(wave: np.ndarray, rng: np.random.Generator, opts: AudioAugment, sample_rate: int,
                 level: float) -> np.ndarray:
    """1 to ``babble_talkers[1]`` other utterances from the pool, at a drawn SNR relative to ``level``."""
    talkers = int(rng.integers(opts.babble_talkers[0], opts.babble_talkers[1] + 1))
    picks = rng.integers(0, len(opts.babble_files), size=talkers)
    voices = []
    for i in picks:
        try:
            with warnings.catch_warnings():  # librosa's fallback decoder warns before it fails
                warnings.simplefilter("ignore")
                voices.append(load_noise(opts.babble_files[int(i)], sample_rate))
        except Exception:  # an unreadable pool file adds no talker; the item itself is not at fault
            continue
    snr = rng.uniform(*opts.babble_snr_db)
    return mix_at_snr(wave, babble(voices, wave.shape[-1], rng), snr, level)


# ---------------------------------------------------------------- SpecAugment


def apply_spec_masks(x: torch.Tensor, time_bands: list[tuple[int, int]], freq_bands: list[tuple[int, int]],
                     fill: str = "zero") -> torch.Tensor:
    """A copy of a ``(..., mels, frames)`` fbank with the given ``(start, width)`` bands masked.

    ``fill="zero"`` writes 0, which for the modality's normalised fbank ((logmel - mean) / std
    with the AudioSet statistics) is the data set's average log-mel, i.e. "no information";
    ``fill="mean"`` writes the mean of ``x`` instead (``mask_spectrogram`` passes one clip at a time).
    """
    out = x.clone()
    value = float(x.mean()) if fill == "mean" else 0.0
    for start, width in time_bands:
        out[..., start:start + width] = value
    for start, width in freq_bands:
        out[..., start:start + width, :] = value
    return out


def draw_bands(rng: np.random.Generator, count: int, max_width: int, size: int) -> list[tuple[int, int]]:
    """``count`` SpecAugment bands: width uniform in [0, max_width] (capped at ``size``), start uniform."""
    bands = []
    for _ in range(count):
        width = int(rng.integers(0, min(max_width, size) + 1))
        bands.append((int(rng.integers(0, size - width + 1)), width))
    return bands


def warp_frequency(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Stretch (``factor`` > 1) or squeeze the mel axis of ``(..., mels, frames)`` about its lowest bin.

    Bin ``m`` of the result reads bin ``m / factor`` of the input, linearly interpolated; bins that
    would read past the top repeat the top bin. On a mel axis this approximates vocal tract length
    perturbation (VTLP): every formant moves by the same ratio, as between a shorter and a longer
    vocal tract, while the time axis and the level stay as they are.
    """
    mels = x.shape[-2]
    source = torch.arange(mels, dtype=torch.float32) / float(factor)
    source = source.clamp(0.0, mels - 1.0)
    low = source.floor().long()
    high = (low + 1).clamp(max=mels - 1)
    frac = (source - low.float()).to(x.dtype)[:, None]
    return x[..., low, :] * (1 - frac) + x[..., high, :] * frac


def mask_spectrogram(x: torch.Tensor, rng: np.random.Generator, opts: AudioAugment) -> torch.Tensor:
    """VTLP and SpecAugment on a preprocessed fbank ``(..., mels, frames)``: every 2-D slice (every
    clip) is warped along its mel axis (``p_warp``, factor drawn from ``warp``), then gets its own
    ``time_masks`` frame bands and ``freq_masks`` mel bands, filled as ``opts.mask_fill`` says (zero
    by default, see ``apply_spec_masks``). The input tensor is not changed.
    """
    if not opts.enabled or x.dim() < 2:
        return x.clone()
    mels, frames = x.shape[-2:]
    flat = x.reshape(-1, mels, frames)
    out = torch.stack([
        apply_spec_masks(_maybe_warp(item, rng, opts),
                         draw_bands(rng, opts.time_masks, opts.time_mask_frames, frames),
                         draw_bands(rng, opts.freq_masks, opts.freq_mask_bins, mels), opts.mask_fill)
        for item in flat
    ])
    return out.reshape(x.shape)


def _maybe_warp(item: torch.Tensor, rng: np.random.Generator, opts: AudioAugment) -> torch.Tensor:
    if opts.p_warp <= 0 or rng.random() >= opts.p_warp:
        return item
    return warp_frequency(item, float(rng.uniform(*opts.warp)))
