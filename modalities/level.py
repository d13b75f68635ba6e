"""Loudness normalization of waveforms: a recording's level carries no meaning, so it is taken out.

A recording made 30 dB quieter has the same words in it, but its log-mel is the original's shifted
down by a constant that a binding trained on a few levels reads as another sound. Scaling every
waveform to one reference loudness before its features are computed removes that shift at
training and at inference alike, so the binding never has to learn it.

Loudness is the 95th percentile of the RMS of 25 ms frames (10 ms hop) on the channel mean: the
level of the loud part of the recording, blind to how much silence or padding surrounds it and to a
single click. Boosting is capped (``max_gain_db``), so a near-silent file stays near-silent rather
than turning its noise floor into full-scale sound; digital silence is returned unchanged.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from binder.errors import ConfigError

LEVELS = ("none", "rms")
LOUDNESS_PERCENTILE = 95.0
FRAME_S = 0.025
HOP_S = 0.010
SILENT_RMS = 1e-7  # below -140 dBFS: digital silence, nothing to scale


def check_level(modality: str, level: str, max_gain_db: float) -> None:
    """Refuse an unknown ``level`` or a negative boost cap (ConfigError naming the modality)."""
    if level not in LEVELS:
        raise ConfigError(f"{modality} level must be one of {LEVELS}, got {level!r}")
    if not max_gain_db >= 0:
        raise ConfigError(f"{modality} max_level_gain_db must be >= 0 (a cap on boosting), got {max_gain_db}")


def loudness_db(wave: np.ndarray, sample_rate: int) -> float:
    """The recording's loudness in dB relative to full scale (see the module docstring); -inf when silent.

    Frame energies come from a running sum of squares, so a long recording costs one pass and no
    frame matrix; a recording shorter than one frame is one frame.
    """
    mono = np.asarray(wave)
    mono = mono if mono.ndim == 1 else mono.mean(axis=0)
    frame, hop = max(1, int(FRAME_S * sample_rate)), max(1, int(HOP_S * sample_rate))
    energy = np.square(mono, dtype=np.float64)  # the one float64 array: summed in place below
    if mono.shape[-1] <= frame:
        rms = float(np.sqrt(np.mean(energy))) if energy.size else 0.0
    else:
        np.cumsum(energy, out=energy)
        starts = np.arange(0, mono.shape[-1] - frame + 1, hop)
        before = np.where(starts > 0, energy[np.maximum(starts - 1, 0)], 0.0)
        frames_rms = np.sqrt(np.maximum(energy[starts + frame - 1] - before, 0.0) / frame)
        rms = float(np.percentile(frames_rms, LOUDNESS_PERCENTILE))
    return 20.0 * np.log10(rms) if rms > SILENT_RMS else float("-inf")


class LevelOptions(Protocol):
    """The options ``level_normalized`` reads (audio's and speech units')."""

    sample_rate: int
    level: str
    level_dbfs: float
    max_level_gain_db: float


def level_normalized(wave: np.ndarray, opts: LevelOptions) -> np.ndarray:
    """``wave`` as a modality with ``opts`` embeds it: at ``level_dbfs`` when ``level`` is "rms", as
    it is when "none"."""
    if opts.level == "none":
        return wave
    return normalize_level(wave, opts.sample_rate, opts.level_dbfs, opts.max_level_gain_db)


def normalize_level(wave: np.ndarray, sample_rate: int, target_dbfs: float, max_gain_db: float) -> np.ndarray:
    """``wave`` scaled to ``target_dbfs`` loudness, boosted by at most ``max_gain_db``; a silent
    recording is returned as it is. The layout ((samples,) or (channels, samples)) is kept."""
    level = loudness_db(wave, sample_rate)
    if not np.isfinite(level):
        return wave
    gain_db = min(target_dbfs - level, max_gain_db)
    return (np.asarray(wave, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)
