"""Named, fixed-strength perturbations of test data: how robust is a binding to one condition?

``anybind eval ... --perturb "snr=10,silence=1.5"`` applies each named perturbation, at the value
given, to every decoded test item before preprocessing. Unlike training augmentation nothing is
drawn at random except where the perturbation itself is noise; that noise comes from a generator
seeded by the item's row, so a perturbed evaluation is repeatable. Each family of modalities has
its own names; an unknown name is an error that lists the known ones.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from binder.errors import AnybindError
from modalities.augment import audio as A
from modalities.augment import raster as R
from modalities.augment import signals as S
from modalities.augment import video as V

Fn = Callable[[Any, float, np.random.Generator, Any], Any]  # (raw, value, rng, modality) -> raw


def _wave(fn: Callable[[np.ndarray, float, np.random.Generator, int], np.ndarray]) -> Fn:
    return lambda raw, v, rng, mod: fn(np.asarray(raw, np.float32), v, rng, mod.options.sample_rate)


def _raster(fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]) -> Fn:
    def run(raw: Any, v: float, rng: np.random.Generator, mod: Any) -> Any:
        arr, bits = (raw if isinstance(raw, tuple) else (raw, None))
        out = np.ascontiguousarray(fn(np.asarray(arr, np.float32), v, rng), dtype=np.float32)
        return out if bits is None else (out, bits)
    return run


def _center_box(shape: tuple[int, ...], keep: float) -> tuple[float, float, float, float]:
    h, w = shape[0], shape[1]
    bw, bh = w * np.sqrt(keep), h * np.sqrt(keep)
    return (w - bw) / 2, (h - bh) / 2, bw, bh


AUDIO: dict[str, tuple[Fn, str]] = {
    "snr": (_wave(lambda w, v, rng, sr: A.add_noise(w, rng, v, "white")), "white noise at this SNR (dB)"),
    "pink": (_wave(lambda w, v, rng, sr: A.add_noise(w, rng, v, "pink")), "pink noise at this SNR (dB)"),
    "silence": (_wave(lambda w, v, rng, sr: A.add_silence(w, int(v * sr), int(v * sr))),
                "this many seconds of silence before and after"),
    "gain": (_wave(lambda w, v, rng, sr: A.apply_gain(w, v)), "gain in dB"),
    "speed": (_wave(lambda w, v, rng, sr: A.speed_perturb(w, v)), "speed factor (tempo and pitch)"),
    "pitch": (_wave(lambda w, v, rng, sr: A.pitch_shift(w, sr, v)), "pitch shift in semitones"),
    "shift": (_wave(lambda w, v, rng, sr: A.shift(w, int(v * sr))), "delay by this many seconds"),
}
RASTER: dict[str, tuple[Fn, str]] = {
    "rotate": (_raster(lambda a, v, rng: R.rotate(a, v, valid_aware=True)), "rotation in degrees"),
    "noise": (_raster(lambda a, v, rng: R.add_sensor_noise(a, rng, v)), "Gaussian noise, share of the value range"),
    "holes": (_raster(lambda a, v, rng: R.drop_pixels(a, rng, v)), "share of pixels dropped to 0"),
    "crop": (_raster(lambda a, v, rng: R.resized_crop(a, _center_box(a.shape, v), valid_aware=True)),
             "keep this share of the area (centre), resized back"),
    "gain": (_raster(lambda a, v, rng: R.gain_offset(a, v, 0.0)), "multiply values"),
    "offset": (_raster(lambda a, v, rng: R.gain_offset(a, 1.0, v * R.value_range(a))),
               "add this share of the value range"),
}
VIDEO: dict[str, tuple[Fn, str]] = {
    "crop": (lambda raw, v, rng, mod: V.crop_frames(raw, _center_box(np.shape(raw)[1:3], v)),
             "keep this share of the area (centre), resized back"),
    "offset": (lambda raw, v, rng, mod: V.temporal_shift(raw, int(v)), "shift by this many frames"),
    "stride": (lambda raw, v, rng, mod: V.select_frames(raw, V.frame_indices(len(raw), 0.0, v)),
               "frame-rate change: take every v-th frame"),
}
SIGNAL: dict[str, tuple[Fn, str]] = {
    "scale": (lambda raw, v, rng, mod: S.scale_channels(raw, np.full(len(raw), v)), "multiply every channel"),
    "noise": (lambda raw, v, rng, mod: S.jitter(raw, rng, v), "Gaussian noise, share of each channel's std"),
    "crop": (lambda raw, v, rng, mod: S.window_crop(raw, 0, max(2, int(v * np.shape(raw)[1]))),
             "keep this leading share of the window, resampled back"),
    "dropout": (lambda raw, v, rng, mod: S.drop_channel(raw, int(v)), "zero channel number v"),
}
FAMILIES: dict[str, dict[str, tuple[Fn, str]]] = {
    "audio": AUDIO, "speech_units": AUDIO, "depth": RASTER, "thermal": RASTER,
    "video": VIDEO, "two_stream": VIDEO, "imu": SIGNAL, "timeseries": SIGNAL,
}


@dataclass(frozen=True)
class Perturbation:
    """An ordered list of (name, value) applied to one modality's decoded items."""

    modality: str
    steps: tuple[tuple[str, float], ...]

    def __call__(self, raw: Any, row: int, modality: Any) -> Any:
        rng = np.random.default_rng([zlib.crc32(self.spec.encode()), row])
        table = FAMILIES[self.modality]
        for name, value in self.steps:
            raw = table[name][0](raw, value, rng, modality)
        return raw

    @property
    def spec(self) -> str:
        return ",".join(f"{n}={v:g}" for n, v in self.steps)


def parse_perturbation(spec: str, modality: str) -> Perturbation:
    """``"snr=10,silence=1.5"`` for ``modality`` → a Perturbation; errors list the known names."""
    table = FAMILIES.get(modality)
    if table is None:
        raise AnybindError(f"no perturbations for modality {modality!r}; modalities with some: "
                           f"{', '.join(sorted(FAMILIES))}")
    steps = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, raw = part.partition("=")
        if name not in table:
            known = "; ".join(f"{k} ({doc})" for k, (_, doc) in table.items())
            raise AnybindError(f"unknown perturbation {name!r} for {modality}; known: {known}")
        try:
            value = float(raw)
        except ValueError:
            raise AnybindError(f"perturbation {part!r}: give a number, as {name}=VALUE") from None
        if not sep or not np.isfinite(value):
            raise AnybindError(f"perturbation {part!r}: give a finite number, as {name}=VALUE")
        steps.append((name, value))
    if not steps:
        raise AnybindError(f"empty perturbation spec {spec!r}")
    return Perturbation(modality, tuple(steps))
