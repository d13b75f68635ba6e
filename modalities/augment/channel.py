"""Room, microphone and channel augmentations of speech: what lies between a talker and a file.

A user's recordings reach anybind through a room (reverberation), a microphone (its tilt of lows
and highs), and often a telephone or a codec (band limiting, resampling, lossy coding). Synthetic
training voices have none of these, so each is simulated here as a pure function of the waveform
and explicit parameters; ``augment_wave`` draws the parameters from the item's generator, so an
augmented item still replays bit for bit. Waveforms are float32, ``(samples,)`` or
``(channels, samples)``, and every function returns the same layout and length.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np


@dataclass(frozen=True)
class CodecSpec:
    """One lossy round trip: FFmpeg encoder, container format, sample rate, bitrate (None = fixed) and
    encoder options."""

    encoder: str
    container: str
    rate: int
    bitrate: int | None = None
    options: tuple[tuple[str, str], ...] = ()


# Lossy codecs a call or a voice message goes through, each at the rate and bitrate it is used at.
# Every one is an FFmpeg encoder that PyAV's wheels ship.
CODECS: dict[str, CodecSpec] = {
    "mulaw": CodecSpec("pcm_mulaw", "wav", 8000),            # G.711 μ-law, the telephone network
    "alaw": CodecSpec("pcm_alaw", "wav", 8000),              # G.711 A-law
    "amr_nb": CodecSpec("libopencore_amrnb", "amr", 8000, 12200),  # mobile calls
    # The fastest encoder effort: 4x (Opus) and 2x (MP3) less time per item at the same bitrate, and
    # the cheap encoders of phones and small devices are what a user's recordings went through.
    "opus": CodecSpec("libopus", "ogg", 16000, 12000, (("compression_level", "0"),)),  # voice messages, VoIP
    "mp3": CodecSpec("libmp3lame", "mp3", 22050, 32000, (("compression_level", "9"),)),  # low-bitrate MP3
}


def _resample_poly(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy), with its anti-aliasing filter."""
    from scipy.signal import resample_poly

    if orig_sr == target_sr:
        return wave
    g = math.gcd(int(orig_sr), int(target_sr))
    up, down = target_sr // g, orig_sr // g
    if wave.dtype not in (np.float32, np.float64):
        return resample_poly(wave, up, down, axis=-1).astype(np.float32)
    return resample_poly(wave, up, down, axis=-1, window=_polyphase_filter(up, down, wave.dtype.str)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _polyphase_filter(up: int, down: int, dtype: str) -> np.ndarray:
    """The anti-aliasing filter scipy's resample_poly designs for (up, down) by default (a Kaiser
    window, beta 5, 10 taps per rate on each side, in the input's dtype), designed once per ratio:
    augmentation resamples every item and the design took as long as the filtering."""
    from scipy.signal import firwin

    rate = max(up, down)
    h = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(dtype)
    h.setflags(write=False)
    return h


def _fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """``wave`` cut or zero-padded at its end to ``length`` samples (librosa's fix_length), contiguous."""
    import librosa

    return np.ascontiguousarray(librosa.util.fix_length(wave, size=length, axis=-1))


def lowpass(wave: np.ndarray, sample_rate: int, cutoff_hz: float, order: int = 8) -> np.ndarray:
    """A Butterworth low-pass at ``cutoff_hz`` (a narrow microphone or channel); no-op at or above Nyquist."""
    from scipy.signal import sosfilt

    if cutoff_hz >= sample_rate / 2:
        return np.asarray(wave, dtype=np.float32).copy()
    sos = _butter_lowpass(order, float(cutoff_hz), int(sample_rate)).copy()  # sosfilt wants a writeable array
    return sosfilt(sos, wave, axis=-1).astype(np.float32)


@functools.lru_cache(maxsize=1024)
def _butter_lowpass(order: int, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """A Butterworth low-pass as second-order sections, designed once per (order, cutoff, rate):
    the design costs more than filtering a second of audio."""
    from scipy.signal import butter

    sos = butter(order, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    sos.flags.writeable = False  # shared by every later call: callers filter with a copy
    return sos


def through_rate(wave: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """Down to ``rate`` and back up: what a file recorded or stored at ``rate`` keeps (nothing above rate/2)."""
    if rate >= sample_rate:
        return np.asarray(wave, dtype=np.float32).copy()
    down = _resample_poly(np.asarray(wave, dtype=np.float32), sample_rate, rate)
    return _fit_length(_resample_poly(down, rate, sample_rate), wave.shape[-1])


def _shelf(sample_rate: int, freq_hz: float, gain_db: float, kind: str) -> np.ndarray:
    """One shelving biquad (the Audio EQ Cookbook's, slope 1) as a (1, 6) second-order section."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2 * math.pi * freq_hz / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / 2 * math.sqrt(2.0)
    root = 2 * math.sqrt(a) * alpha
    sign = 1.0 if kind == "low" else -1.0
    b0 = a * ((a + 1) - sign * (a - 1) * cos + root)
    b1 = sign * 2 * a * ((a - 1) - sign * (a + 1) * cos)
    b2 = a * ((a + 1) - sign * (a - 1) * cos - root)
    a0 = (a + 1) + sign * (a - 1) * cos + root
    a1 = -sign * 2 * ((a - 1) + sign * (a + 1) * cos)
    a2 = (a + 1) + sign * (a - 1) * cos - root
    return np.array([[b0, b1, b2, a0, a1, a2]]) / a0


def shelf_eq(wave: np.ndarray, sample_rate: int, low_db: float, high_db: float, low_hz: float = 250.0,
             high_hz: float = 3000.0) -> np.ndarray:
    """A microphone's colour: a low shelf of ``low_db`` below ``low_hz`` and a high shelf of ``high_db``
    above ``high_hz``."""
    from scipy.signal import sosfilt

    sos = np.concatenate([_shelf(sample_rate, low_hz, low_db, "low"), _shelf(sample_rate, high_hz, high_db, "high")])
    return sosfilt(sos, wave, axis=-1).astype(np.float32)


def synthetic_rir(sample_rate: int, rt60_s: float, rng: np.random.Generator, direct_to_reverb_db: float = 0.0
                  ) -> np.ndarray:
    """A room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB over ``rt60_s``
    (Schroeder's statistical model of a diffuse late field), its energy ``direct_to_reverb_db`` below
    the direct path's. Length ``rt60_s`` seconds."""
    n = max(2, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-3.0 * math.log(10.0) * t / rt60_s)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= math.sqrt(10.0 ** (-direct_to_reverb_db / 10.0) / max(float(np.sum(tail ** 2)), 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wave`` heard in the room of ``rir``: convolved, cut to its own length, at its own RMS level."""
    from scipy.signal import fftconvolve

    x = np.asarray(wave, dtype=np.float32)
    kernel = rir.reshape((1,) * (x.ndim - 1) + (-1,))
    wet = fftconvolve(x, kernel, axes=-1)[..., : x.shape[-1]].astype(np.float32)
    dry_rms, wet_rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), float(np.sqrt(np.mean(wet ** 2.0)))
    return wet * np.float32(dry_rms / wet_rms) if wet_rms > 0 else wet


def codec_round_trip(wave: np.ndarray, sample_rate: int, codec: str) -> np.ndarray:
    """``wave`` encoded with ``codec`` (a key of ``CODECS``) through PyAV, decoded, and resampled back.

    Mono only (multi-channel input is coded per channel). Samples are clipped to [-1, 1] as the
    16-bit encoders need; the result has the input's length (codec delay and padding cut or filled).
    """
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim > 1:
        return np.stack([codec_round_trip(ch, sample_rate, codec) for ch in x])
    spec = CODECS[codec]
    pcm = np.clip(_resample_poly(x, sample_rate, spec.rate), -1.0, 1.0)
    decoded = _decode(_encode(pcm, spec), spec.rate)
    return _fit_length(_resample_poly(decoded, spec.rate, sample_rate), x.shape[-1]).astype(np.float32)


def _encode(pcm: np.ndarray, spec: CodecSpec) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=spec.container) as out:
        stream = cast("av.audio.stream.AudioStream",
                      out.add_stream(spec.encoder, rate=spec.rate, layout="mono", options=dict(spec.options)))
        if spec.bitrate:
            stream.codec_context.bit_rate = spec.bitrate
        fmt = _input_format(spec.encoder)
        samples: np.ndarray[Any, Any] = ((pcm * 32767).astype(np.int16) if fmt.startswith("s16")
                                         else pcm.astype(np.float32))
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, samples.shape[-1], frame_size):
            chunk = samples[start:start + frame_size]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None]), format=fmt, layout="mono")
            frame.sample_rate = spec.rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@functools.cache
def _input_format(encoder: str) -> str:
    """The sample format to feed ``encoder``: 16-bit integers where it takes them, else its first."""
    import av

    names = [f.name for f in av.codec.Codec(encoder, "w").audio_formats or ()]
    for preferred in ("s16", "s16p", "flt", "fltp"):
        if preferred in names:
            return preferred
    raise ValueError(f"encoder {encoder} takes none of s16/flt ({names})")


def _decode(data: bytes, rate: int) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks = []
    with av.open(io.BytesIO(data), "r") as inp:
        for frame in inp.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
