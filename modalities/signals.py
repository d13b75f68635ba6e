"""Reading sampled signals (IMU, generic time series) from .npy, .csv and .ts files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from binder.errors import ModalityError
from modalities.common import read_csv, read_npy, read_ts, to_channels_first

SIGNAL_READERS = {".npy": read_npy, ".csv": read_csv, ".ts": read_ts}


def read_signal(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """A (channels, time) float32 array; (time, channels) files are transposed."""
    reader = SIGNAL_READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise ModalityError(path, f"unsupported signal format {Path(path).suffix!r}; use .npy, .csv or .ts")
    return to_channels_first(path, reader(path), channels)
