"""Sample files for the audio and speech_units modalities (deterministic synthetic signals)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from samplegen import maker


def write_wav(path: str | Path, samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write (n,) or (n, channels) samples as a WAV file; ``subtype="FLOAT"`` keeps NaN/inf as they are."""
    sf.write(str(path), np.asarray(samples), sr, subtype=subtype, format="WAV")
    return Path(path)


def chirp(seconds: float, sr: int, f0: float = 200.0, f1: float = 4000.0, seed: int = 0) -> np.ndarray:
    """A linear chirp from f0 to f1 plus a little white noise, in [-1, 1]."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * np.sin(phase) + 0.05 * noise).astype(np.float32)


def voiced_speech(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A vowel-like signal: harmonics of a gliding pitch, shaped by moving formants and syllable rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    f1 = 500 + 250 * np.sin(2 * np.pi * 2.1 * t)  # first and second formant trajectories
    f2 = 1500 + 600 * np.sin(2 * np.pi * 1.7 * t + 1.0)
    sig = np.zeros_like(t)
    for h in range(1, 30):
        freq = h * f0
        gain = np.exp(-((freq - f1) / 150) ** 2) + 0.6 * np.exp(-((freq - f2) / 200) ** 2) + 0.02
        sig += gain * np.sin(h * phase)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2  # ~4 syllables per second
    sig = sig * envelope + 0.005 * rng.standard_normal(t.size)
    return (0.8 * sig / np.abs(sig).max()).astype(np.float32)


@maker("audio")
def make_audio(d: Path, seed: int = 0) -> Path:
    sr = 22050
    left = chirp(3.0, sr, seed=seed)
    right = chirp(3.0, sr, f0=300.0, f1=2000.0, seed=seed + 1)
    return write_wav(d / f"sound{seed}.wav", np.stack([left, right], axis=1), sr)


@maker("speech_units")
def make_speech(d: Path, seed: int = 0) -> Path:
    return write_wav(d / f"utterance{seed}.speech.wav", voiced_speech(1.5, 16000, seed), 16000)
