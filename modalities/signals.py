"""Reading sampled signals (IMU, generic time series) from .npy, .csv and .ts files; their perturbations."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from binder.errors import ModalityError
from modalities.augment import signals as aug
from modalities.base import Perturber
from modalities.common import read_csv, read_npy, read_ts, to_channels_first

SIGNAL_READERS = {".npy": read_npy, ".csv": read_csv, ".ts": read_ts}


def read_signal(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """A (channels, time) float32 array; (time, channels) files are transposed."""
    reader = SIGNAL_READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise ModalityError(path, f"unsupported signal format {Path(path).suffix!r}; use .npy, .csv or .ts")
    return to_channels_first(path, reader(path), channels)


SIGNAL_PERTURBATIONS: dict[str, Perturber] = {
    "scale": Perturber(lambda raw, v, rng, mod: aug.scale_channels(raw, np.full(len(raw), v)),
                       "multiply every channel"),
    "noise": Perturber(lambda raw, v, rng, mod: aug.jitter(raw, rng, v), "Gaussian noise, share of each channel's std"),
    "crop": Perturber(lambda raw, v, rng, mod: aug.window_crop(raw, 0, max(2, int(v * np.shape(raw)[1]))),
                      "keep this leading share of the window, resampled back"),
    "dropout": Perturber(lambda raw, v, rng, mod: aug.drop_channel(raw, int(v)), "zero channel number v"),
}
"""Named perturbations of a (channels, time) signal (IMU, time series)."""
