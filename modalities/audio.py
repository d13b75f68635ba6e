"""Audio as ImageBind sees it: 16 kHz mono, k evenly spaced 2 s clips, 128-bin kaldi log-mel fbanks.

Preprocessing follows ImageBind's ``load_and_transform_audio_data`` step by step (clip times of
pytorchvideo's ``ConstantClipsPerVideoSampler``, per-clip mean removal, kaldi fbank, zero pad or
crop to 204 frames, normalization by the AudioSet mean/std) so that a checkpoint converted from
ImageBind sees the inputs it was trained on. ``fbank_clips`` is the batched hot path; it computes
the same numbers as calling ``torchaudio.compliance.kaldi.fbank`` once per clip.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from binder.errors import ConfigError, ModalityError
from binder.registry import register_modality
from binder.tokenizers import PatchTokens2d
from modalities.augment import audio as aug
from modalities.augment.audio import AudioAugment, augment_wave, babble_pool, mask_spectrogram
from modalities.base import Modality, Perturber, PerturbFn
from modalities.common import check_file, check_finite, check_range, quiet_native_stderr
from modalities.level import check_level, level_normalized
from modalities.preview import colormap
from modalities.resample import resample

if TYPE_CHECKING:
    from PIL import Image

# kaldi.fbank settings ImageBind uses that are not options here (AST's recipe).
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
# The short-clip policy: anything down to one analysis window is embedded (padded by the modality's
# short_policy); a file shorter than that holds no complete frame and is refused.
ANALYSIS_WINDOW_S = FRAME_LENGTH_MS / 1000.0
# How each clip's log-mel is normalized: "global" ((x - mean) / std, ImageBind's), "cmn" (less its own
# per-bin mean over time), "cmvn" (and divided by its own per-bin std, floored at VARIANCE_FLOOR),
# "pcen" (librosa's per-channel energy normalization of the mel magnitudes in place of the log).
NORMALIZATIONS = ("global", "cmn", "cmvn", "pcen")
VARIANCE_FLOOR = 0.5  # log units: a near-constant bin (a band a telephone cut) is not blown up to unit variance
# PCEN: magnitudes of float audio are scaled to the integer range librosa's defaults expect; the
# output is standardized by its mean and std over the world's training clips (speech and silence).
PCEN_INPUT_SCALE = 2.0 ** 31
PCEN_MEAN, PCEN_STD = 0.939, 1.169
# Silence trimming never keeps less than this much of a recording (all of it when shorter).
TRIM_MIN_KEEP_S = 0.25
PREEMPHASIS = 0.97
LOW_FREQ = 20.0

# Bounds checked before and after decoding (options of audio and speech_units; documented in
# docs/guides/embed-search-index.md).
MAX_ABS = 1e3  # decoded samples are about [-1, 1]; 1e3 leaves room for hot float WAVs, not for 1e30
MAX_DURATION = 3600.0  # seconds; probed from the header (libsndfile) before anything is decoded
MAX_CHANNELS = 64
PREVIEW_SECONDS = 30.0  # a preview shows the start of the recording


@dataclasses.dataclass(frozen=True)
class AudioOptions:
    """Options of the audio modality; the clip and fbank defaults are ImageBind's.

    ``channel``: "mean" averages stereo, "first" reads it as ImageBind does. ``resampler``: "soxr"
    (high quality) or "torchaudio" (ImageBind's). The ``imagebind-*`` presets set both.
    ``level``: "rms" scales each recording to ``level_dbfs`` loudness after silence trimming,
    boosting by at most ``max_level_gain_db`` (``modalities.level``); "none" keeps the level as decoded.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 204
    clip_duration: float = 2.0
    clips: int = 3
    mean: float = -4.268
    std: float = 9.138
    normalize: str = "global"
    patch: int = 16
    stride: int = 10
    short_policy: str = "pad"
    min_duration: float = ANALYSIS_WINDOW_S
    channel: str = "mean"
    resampler: str = "soxr"
    trim_silence: bool = True
    trim_top_db: float = 40.0
    clip_select: str = "loudest"
    level: str = "none"
    level_dbfs: float = -15.0
    max_level_gain_db: float = 40.0
    max_abs: float = MAX_ABS
    max_duration: float = MAX_DURATION
    max_channels: int = MAX_CHANNELS

    def __post_init__(self) -> None:
        if self.short_policy not in ("pad", "repeat"):
            raise ConfigError(f"audio short_policy must be 'pad' or 'repeat', got {self.short_policy!r}")
        if self.channel not in ("mean", "first"):
            raise ConfigError(f"audio channel must be 'mean' (average) or 'first' (ImageBind), got {self.channel!r}")
        if self.resampler not in ("soxr", "torchaudio"):
            raise ConfigError(f"audio resampler must be 'soxr' or 'torchaudio' (ImageBind), got {self.resampler!r}")
        if self.clip_select not in ("even", "loudest"):
            raise ConfigError(f"audio clip_select must be 'even' (ImageBind) or 'loudest', got {self.clip_select!r}")
        if self.trim_top_db <= 0:
            raise ConfigError(f"audio trim_top_db must be positive, got {self.trim_top_db}")
        check_min_duration("audio", self.min_duration)
        check_level("audio", self.level, self.max_level_gain_db)
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"audio normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.clips < 1 or self.clip_duration <= 0 or self.sample_rate <= 0:
            raise ConfigError("audio clips, clip_duration and sample_rate must be positive")


def load_waveform(path: str | os.PathLike, sample_rate: int, min_duration: float, channel: str = "mean",
                  resampler: str = "soxr", max_abs: float = MAX_ABS, max_duration: float = MAX_DURATION,
                  max_channels: int = MAX_CHANNELS) -> np.ndarray:
    """Decode an audio file to a float32 waveform at ``sample_rate``: (samples,) or (channels, samples).

    By default the same result as ``librosa.load(path, sr=sample_rate, mono=True)`` (decode,
    average channels, soxr_hq resample). ``channel="first"`` keeps every channel for ImageBind's
    reading (fbank of the first channel after removing the mean of all of them) and
    ``resampler="torchaudio"`` is ImageBind's ``torchaudio.functional.resample`` (its filter on its
    nonzero taps, ``modalities.resample``: equal to float rounding). libsndfile formats are read
    with soundfile directly, integer PCM as integers (``INTEGER_PCM``: the same floats, 7x faster),
    anything else by librosa. It is done step by step so NaN/inf samples, samples beyond
    ``max_abs`` and too-short files get a clear ModalityError (librosa's own check would raise a
    bare ParameterError). Duration and channel count are probed from the header first
    (``probe_audio``) so an absurd file is refused before it is decoded. librosa's audioread-fallback
    warnings are silenced: a file neither backend can read becomes one clean error naming the file.
    """
    import librosa

    check_wav_complete(check_file(path))
    probe_audio(path, max_duration, max_channels)
    try:
        with warnings.catch_warnings(), quiet_native_stderr():
            for category in (FutureWarning, UserWarning, DeprecationWarning):  # audioread fallback/import noise
                warnings.simplefilter("ignore", category)
            decoded = _read_soundfile(path)
            if decoded is None:  # not a libsndfile format: librosa's audioread fallback
                fallback, fallback_sr = librosa.load(os.fspath(path), sr=None, mono=False)
                decoded = (fallback, fallback_sr, False)
            wave, native_sr, integer = decoded
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # soundfile, audioread and ffmpeg all raise their own types
        reason = str(exc).strip() or f"no decoder recognizes the format ({type(exc).__name__})"
        raise ModalityError(path, f"cannot decode audio (truncated or not an audio file): {reason}") from None
    if wave.size == 0:
        raise ModalityError(path, "audio file holds no samples")
    if not integer:  # integer PCM is finite and within [-1, 1] by construction
        wave = check_finite(path, wave)
    if not (integer and max_abs >= 1.0):
        wave = check_range(path, wave, max_abs)
    if channel == "mean":
        wave = librosa.to_mono(wave)
    duration = wave.shape[-1] / native_sr
    if duration < min_duration:
        raise ModalityError(path, f"audio is {duration:.3f} s long, shorter than min_duration {min_duration:g} s "
                                  f"(one {FRAME_LENGTH_MS:g} ms analysis window is the least that can be embedded)")
    if native_sr != sample_rate:
        wave = _resample(wave, native_sr, sample_rate, resampler)
    return np.ascontiguousarray(wave, dtype=np.float32)


def check_min_duration(modality: str, min_duration: float) -> None:
    """Refuse a ``min_duration`` below one analysis window: such audio would hold no frame at all."""
    if not min_duration >= ANALYSIS_WINDOW_S:
        raise ConfigError(f"{modality} min_duration must be at least one analysis window "
                         f"({ANALYSIS_WINDOW_S:g} s), got {min_duration}")


def probe_audio(path: str | os.PathLike, max_duration: float, max_channels: int) -> None:
    """Refuse, from the header alone, audio longer than ``max_duration`` s or with more than
    ``max_channels`` channels. Formats libsndfile cannot probe are left to the decoder."""
    import soundfile

    try:
        with quiet_native_stderr():
            info = soundfile.info(os.fspath(path))
    except Exception:  # not a libsndfile format (m4a, ...): decoding decides
        return
    if info.channels > max_channels:
        raise ModalityError(path, f"audio has {info.channels} channels, more than max_channels {max_channels}")
    if info.samplerate > 0 and info.frames / info.samplerate > max_duration:
        raise ModalityError(path, f"audio is {info.frames / info.samplerate:.1f} s long, more than max_duration "
                                  f"{max_duration:g} s")


def trim_silence(wave: np.ndarray, sample_rate: int, top_db: float,
                 min_keep: float = TRIM_MIN_KEEP_S) -> np.ndarray:
    """``wave`` without its leading and trailing silence: frames quieter than the loudest by ``top_db``.

    Energy-based (librosa.effects.trim on the channel mean). What is kept is never shorter than
    ``min_keep`` seconds (or the whole recording, when it is shorter): around a very short sound
    the kept span is widened symmetrically inside the recording; a silent file is kept whole.
    """
    import librosa

    mono = wave if wave.ndim == 1 else wave.mean(axis=0)
    if not np.any(mono):
        return wave
    _, (start, end) = librosa.effects.trim(mono, top_db=top_db, frame_length=512, hop_length=128)
    need = min(mono.shape[-1], int(np.ceil(min_keep * sample_rate)))
    if end - start < need:
        start = max(0, min(start - (need - (end - start)) // 2, mono.shape[-1] - need))
        end = start + need
    return np.ascontiguousarray(wave[..., start:end])


# Integer PCM subtypes read as integers and scaled here: libsndfile's own conversion to float is
# 7x slower (1.8 ms against 0.25 for 10 s of 44.1 kHz stereo) and gives the same float32 values
# (an int16 or a 24-bit sample times a power of two is exact in float32).
INTEGER_PCM = {"PCM_16": ("int16", 2.0 ** -15), "PCM_24": ("int32", 2.0 ** -31)}


def _read_soundfile(path: str | os.PathLike) -> tuple[np.ndarray, float, bool] | None:
    """``(wave, sample_rate, integer)`` as ``librosa.load(path, sr=None, mono=False)`` decodes it
    (float32, (samples,) or (channels, samples)), or None where libsndfile cannot read the format
    (librosa would then try audioread). ``integer``: decoded from integer PCM."""
    import soundfile

    try:
        with soundfile.SoundFile(os.fspath(path)) as fh:
            sample_rate = fh.samplerate
            dtype, scale = INTEGER_PCM.get(fh.subtype, ("float32", None))
            data = fh.read(dtype=dtype, always_2d=False)
    except soundfile.SoundFileRuntimeError:
        return None
    if scale is not None:
        data = np.multiply(data, np.float32(scale), dtype=np.float32)
    return data.T, sample_rate, scale is not None


def _resample(wave: np.ndarray, orig_sr: float, target_sr: int, resampler: str) -> np.ndarray:
    if resampler == "torchaudio":  # torchaudio's filter, on its live taps only (modalities.resample)
        src = torch.from_numpy(np.asarray(wave, dtype=np.float32))  # (channels, samples) may be a strided view
        return resample(src, int(orig_sr), target_sr).numpy()
    import librosa

    return librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")


def check_wav_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header declares.

    libsndfile quietly decodes what is left of a cut-off WAV, which would embed half a recording
    as if it were whole; the header's chunk size tells the truth.
    """
    if path.suffix.lower() != ".wav":
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not RIFF: the decoder gives the error
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_len = fh.read(4), int.from_bytes(fh.read(4), "little")
            if chunk_id == b"data":
                if chunk_len != 0xFFFFFFFF and pos + 8 + chunk_len > size:
                    raise ModalityError(path, f"truncated WAV: header declares {chunk_len} bytes of audio, "
                                              f"file holds {size - pos - 8}")
                return
            pos += 8 + chunk_len + (chunk_len & 1)
    raise ModalityError(path, "truncated WAV: no complete data chunk")


def clip_starts(n_samples: int, opts: AudioOptions) -> list[Fraction]:
    """Clip start times in seconds, exactly as pytorchvideo's ConstantClipsPerVideoSampler.

    ``max_start = max(duration - clip_duration, 0)`` (in float, then an exact Fraction), and clip
    i starts at ``max_start / clips * i``; audio shorter than one clip yields ``clips`` clips at 0.
    """
    duration = n_samples / opts.sample_rate
    max_start = Fraction(max(duration - float(Fraction(opts.clip_duration)), 0))
    step = Fraction(max_start, opts.clips)
    return [step * i for i in range(opts.clips)]


def clip_bounds(n_samples: int, opts: AudioOptions) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of each clip: ``int(t * sr)`` of its start and end times."""
    sr, length = opts.sample_rate, Fraction(opts.clip_duration)
    return [(int(t * sr), min(int((t + length) * sr), n_samples)) for t in clip_starts(n_samples, opts)]


def loudest_clip(wave: torch.Tensor, opts: AudioOptions) -> list[tuple[int, int]] | None:
    """The one clip window ``[start, end)`` holding the most energy, on a 10 ms grid (earliest on
    ties); None when the recording is no longer than a clip. With one clip per recording this keeps
    a sound that noise or a long lead-in put past the first ``clip_duration`` seconds."""
    length = int(opts.clip_duration * opts.sample_rate)
    n = wave.shape[-1]
    if n <= length:
        return None
    hop = max(1, opts.sample_rate // 100)
    power = torch.cumsum(torch.cat([wave.new_zeros(1, dtype=torch.float64), wave.double().pow(2).mean(dim=0)]), 0)
    starts = torch.arange(0, n - length + 1, hop)
    start = int(starts[int(torch.argmax(power[starts + length] - power[starts]))])
    return [(start, start + length)]


def _frame_geometry(sample_rate: int) -> tuple[int, int, int]:
    """Window shift, window size and FFT size in samples, computed as kaldi.fbank computes them."""
    shift = int(sample_rate * FRAME_SHIFT_MS * 0.001)
    size = int(sample_rate * FRAME_LENGTH_MS * 0.001)
    return shift, size, 1 << (size - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _mel_matrix(num_mel_bins: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """kaldi's triangular mel filterbank with its zero Nyquist column, transposed: (n_fft/2+1, mels)."""
    from torchaudio.compliance import kaldi

    banks, _ = kaldi.get_mel_banks(num_mel_bins, n_fft, float(sample_rate), LOW_FREQ, 0.0, 100.0, -500.0, 1.0)
    banks = torch.nn.functional.pad(banks.float(), (0, 1))
    return banks.T.contiguous()


@functools.lru_cache(maxsize=8)
def _window(size: int) -> torch.Tensor:
    return torch.hann_window(size, periodic=False, dtype=torch.float32)


def _tile(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat a waveform end to end until it is ``length`` samples long (no-op if longer)."""
    n = wave.shape[-1]
    if n >= length or n == 0:
        return wave
    reps = (1,) * (wave.dim() - 1) + (-(-length // n),)
    return wave.repeat(*reps)[..., :length]


def _clip_frames(wave: torch.Tensor, bounds: list[tuple[int, int]], frames: int, size: int,
                 shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi frames of every clip, (clips, frames, size), and which of them exist, (clips, frames).

    Each clip's mean is removed in place on one working copy before its frames are taken, as
    ImageBind's ``waveform -= waveform.mean()`` does on a view: overlapping clips therefore see
    the mean removal of earlier clips. Kept for numerical compatibility with ImageBind.
    """
    work = wave.clone()  # (channels, samples): the mean is taken over every channel, frames from the first
    out = wave.new_zeros(len(bounds), frames, size)
    valid = torch.zeros(len(bounds), frames, dtype=torch.bool, device=wave.device)
    for i, (start, end) in enumerate(bounds):
        seg = work[:, start:end]
        seg -= seg.mean()
        if seg.shape[1] >= size:
            strided = seg[0].unfold(0, size, shift)[:frames]
            out[i, : strided.shape[0]] = strided
            valid[i, : strided.shape[0]] = True
    return out, valid


def fbank_clips(waveform: torch.Tensor, opts: AudioOptions) -> torch.Tensor:
    """ImageBind's normalized log-mel clips of a mono waveform: (clips, 1, num_mel_bins, target_length).

    Equals, per clip, ``kaldi.fbank(clip[None], htk_compat=True, sample_frequency=sr,
    use_energy=False, window_type="hanning", num_mel_bins=..., dither=0.0, frame_length=25,
    frame_shift=10)`` transposed, zero padded or cropped to ``target_length`` frames, then
    ``(x - mean) / std``; but every clip goes through one batched FFT and mel product, and only
    frames that survive the crop are computed. With ``short_policy="repeat"`` a waveform shorter
    than one clip is tiled to clip length first.
    """
    wave = torch.as_tensor(waveform, dtype=torch.float32)
    wave = wave.reshape(1, -1) if wave.dim() < 2 else wave
    if opts.short_policy == "repeat":
        wave = _tile(wave, int(opts.clip_duration * opts.sample_rate))
    shift, size, n_fft = _frame_geometry(opts.sample_rate)
    loudest = opts.clip_select == "loudest" and opts.clips == 1
    bounds = (loudest_clip(wave, opts) if loudest else None) or clip_bounds(wave.shape[1], opts)
    frames, valid = _clip_frames(wave, bounds, opts.target_length, size, shift)
    frames = frames - frames.mean(dim=-1, keepdim=True)  # kaldi remove_dc_offset
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPHASIS * previous) * _window(size).to(wave.device)
    # |X|² as re² + im²: the complex abs (a hypot) then squared is 2.4x slower, same to 2.4e-7 relative
    spectrum = torch.view_as_real(torch.fft.rfft(frames, n=n_fft))
    spectrum = spectrum * spectrum
    power = spectrum[..., 0] + spectrum[..., 1]
    mel = torch.matmul(power, _mel_matrix(opts.num_mel_bins, n_fft, opts.sample_rate).to(wave.device))
    if opts.normalize == "pcen":
        return pcen_normalized(mel, valid, opts.sample_rate, shift).transpose(1, 2).unsqueeze(1).contiguous()
    logmel = mel.clamp_min(torch.finfo(torch.float32).eps).log()
    if opts.normalize != "global":
        return utterance_normalized(logmel, valid, opts.normalize == "cmvn").transpose(1, 2).unsqueeze(1).contiguous()
    logmel = logmel.masked_fill(~valid[..., None], 0.0)  # ImageBind pads the fbank with zeros
    return ((logmel.transpose(1, 2) - opts.mean) / opts.std).unsqueeze(1).contiguous()


def pcen_normalized(mel: torch.Tensor, valid: torch.Tensor, sample_rate: int, hop: int) -> torch.Tensor:
    """Per-channel energy normalization (librosa.pcen, its defaults) of each clip's mel magnitudes,
    (clips, frames, mels): an automatic gain control per mel band, smoothed over 0.4 s, then root
    compression, so a level or a fixed microphone colouring moves it less than a log does. Padding
    frames are 0, the standardized mean."""
    import librosa

    magnitude = mel.clamp_min(0.0).sqrt().double().cpu().numpy() * PCEN_INPUT_SCALE
    out = librosa.pcen(magnitude, sr=sample_rate, hop_length=hop, axis=1)
    norm = (torch.from_numpy(out).to(mel.device, torch.float32) - PCEN_MEAN) / PCEN_STD
    return norm * valid[..., None].to(norm.dtype)


def utterance_normalized(logmel: torch.Tensor, valid: torch.Tensor, variance: bool) -> torch.Tensor:
    """Each clip's log-mel less its own per-bin mean over its real frames (and divided by their std
    with ``variance``): cepstral mean (and variance) normalization, which removes what a fixed
    microphone or line adds to every frame. Padding frames are 0, the normalized mean."""
    weight = valid[..., None].to(logmel.dtype)  # (clips, frames, 1)
    count = weight.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (logmel * weight).sum(dim=1, keepdim=True) / count
    out = (logmel - mean) * weight
    if variance:
        std = (out.pow(2).sum(dim=1, keepdim=True) / count).sqrt()
        out = out / std.clamp_min(VARIANCE_FLOOR)
    return out


# ---------------------------------------------------------------- preview and perturbations (audio, speech units)


def read_audio_head(path: str | os.PathLike, seconds: float = PREVIEW_SECONDS) -> tuple[np.ndarray, int]:
    """Mono float32 samples of the first ``seconds`` of a recording and their sample rate.

    libsndfile formats are read frame-bounded; anything else goes through librosa with a duration,
    so a long file is never decoded whole for a preview. Errors name the file.
    """
    import soundfile

    check_file(path)
    try:
        with quiet_native_stderr():
            info = soundfile.info(os.fspath(path))
            wave, sr = soundfile.read(os.fspath(path), frames=int(seconds * info.samplerate), dtype="float32",
                                      always_2d=True)
        wave = wave.mean(axis=1)
    except Exception:  # not a libsndfile format (m4a, ...): librosa's decoders, bounded by duration
        wave, sr = _librosa_head(path, seconds)
    if wave.size == 0:
        raise ModalityError(path, "audio file holds no samples")
    return np.nan_to_num(wave.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), int(sr)


def _librosa_head(path: str | os.PathLike, seconds: float) -> tuple[np.ndarray, int]:
    import librosa

    try:
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            wave, sr = librosa.load(os.fspath(path), sr=None, mono=True, duration=seconds)
    except Exception as exc:
        raise ModalityError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    return np.asarray(wave, np.float32), int(sr)


def spectrogram(wave: np.ndarray, sr: int, width: int = 256, mels: int = 64, fmin: float = 20.0) -> np.ndarray:
    """Log-mel power in dB below the peak (80 dB range) scaled to [0, 1], low frequencies at the
    bottom: (mels, frames), about ``width`` frames of ~32 ms Hann windows (librosa's mel
    spectrogram, HTK mel scale from ``fmin`` to Nyquist)."""
    import librosa

    n_fft = 1 << max(8, math.ceil(math.log2(sr * 0.032)))
    wave = np.pad(np.asarray(wave, np.float32), (0, max(0, n_fft - wave.size)))
    hop = max(1, (wave.size - n_fft) // max(1, width - 1))
    mel = librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=n_fft, hop_length=hop, window="hann", center=False,
                                         power=2.0, n_mels=mels, fmin=fmin, fmax=sr / 2.0, htk=True)
    db = librosa.power_to_db(mel[:, :width], ref=np.max, amin=1e-12, top_db=80.0)
    return (np.clip(db, -80.0, 0.0) / 80.0 + 1.0)[::-1]


def spectrogram_preview(path: str | os.PathLike, size: int) -> Image.Image:
    """A magma log-mel spectrogram of the recording's start, ``size`` wide and half as high."""
    from PIL import Image

    wave, sr = read_audio_head(path)
    img = Image.fromarray(colormap(spectrogram(wave, sr, width=size), "magma"), "RGB")
    return img.resize((size, max(1, size // 2)), Image.Resampling.BILINEAR)


def _wave(fn: Callable[[np.ndarray, float, np.random.Generator, int], np.ndarray]) -> PerturbFn:
    return lambda raw, v, rng, mod: fn(np.asarray(raw, np.float32), v, rng, mod.options.sample_rate)


WAVE_PERTURBATIONS: dict[str, Perturber] = {
    "snr": Perturber(_wave(lambda w, v, rng, sr: aug.add_noise(w, rng, v, "white")), "white noise at this SNR (dB)"),
    "pink": Perturber(_wave(lambda w, v, rng, sr: aug.add_noise(w, rng, v, "pink")), "pink noise at this SNR (dB)"),
    "silence": Perturber(_wave(lambda w, v, rng, sr: aug.add_silence(w, int(v * sr), int(v * sr))),
                         "this many seconds of silence before and after"),
    "gain": Perturber(_wave(lambda w, v, rng, sr: aug.apply_gain(w, v)), "gain in dB"),
    "speed": Perturber(_wave(lambda w, v, rng, sr: aug.speed_perturb(w, v)), "speed factor (tempo and pitch)"),
    "pitch": Perturber(_wave(lambda w, v, rng, sr: aug.pitch_shift(w, sr, v)), "pitch shift in semitones"),
    "shift": Perturber(_wave(lambda w, v, rng, sr: aug.shift(w, int(v * sr))), "delay by this many seconds"),
}
"""Named perturbations of a waveform (audio and speech units; ``options.sample_rate`` converts seconds)."""


@register_modality
class Audio(Modality):
    """Resampled to 16 kHz mono and cut into `clips` evenly spaced 2 s clips (ImageBind); audio shorter
    than a clip is zero-padded (or tiled with short_policy="repeat") down to one 25 ms analysis window
    (``min_duration``); shorter files hold no frame and are refused.

    Each clip becomes a 128 × 204 normalized kaldi log-mel fbank, tokenized by overlapping 16 × 16
    patches with stride 10 (AST/ImageBind). Clip embeddings are averaged by the model.
    """

    name = "audio"
    extensions = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
    Options = AudioOptions
    AugmentOptions = AudioAugment
    has_clips = True

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Mono float32 samples at ``sample_rate``; ModalityError for unreadable, non-finite or too-short audio."""
        o = self.options
        return load_waveform(path, o.sample_rate, o.min_duration, o.channel, o.resampler, o.max_abs, o.max_duration,
                             o.max_channels)

    def preprocess(self, raw: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(clips, 1, num_mel_bins, target_length) normalized log-mel clips, leading/trailing silence
        trimmed, the level normalized when ``level`` says so."""
        o = self.options
        wave = np.asarray(raw, dtype=np.float32)
        if o.trim_silence:
            wave = trim_silence(wave, o.sample_rate, o.trim_top_db)
        wave = level_normalized(wave, o)
        return fbank_clips(torch.as_tensor(wave), o)

    def augment_with_data(self, options: AudioAugment, paths: Sequence[str], seed: int) -> AudioAugment:
        """Babble (``p_babble``) draws its other talkers from the training set's own utterances."""
        return options.with_babble(babble_pool(paths, seed))

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: AudioAugment) -> np.ndarray:
        """Shift, crop, silence, gain, noise, speed and pitch of the waveform (modalities.augment.audio)."""
        return augment_wave(raw, rng, options, self.options.sample_rate)

    def augment_tensor(self, tensor: torch.Tensor, rng: np.random.Generator, options: AudioAugment) -> torch.Tensor:
        """SpecAugment time and frequency masks on each clip's fbank."""
        return mask_spectrogram(tensor, rng, options)

    def preview(self, path: Path, size: int) -> Image.Image:
        """A log-mel spectrogram (magma) of the first ``PREVIEW_SECONDS`` of the recording."""
        return spectrogram_preview(path, size)

    def perturbations(self) -> dict[str, Perturber]:
        """Noise at an SNR (white, pink), silence, gain, speed, pitch and delay (``WAVE_PERTURBATIONS``)."""
        return WAVE_PERTURBATIONS

    def input_shape(self) -> tuple[int, ...]:
        o = self.options
        return (o.clips, 1, o.num_mel_bins, o.target_length)

    def build_tokenizer(self, cfg: AudioOptions, width: int) -> nn.Module:
        """Overlapping Conv2d patches of one clip's spectrogram: (B, 1, mels, frames) → (B, 1 + N, width)."""
        return PatchTokens2d(1, width, (cfg.num_mel_bins, cfg.target_length), cfg.patch, cfg.stride)
