"""Inertial measurement units: 3-axis accelerometer + 3-axis gyroscope (ImageBind's IMU input)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import ConfigError, ModalityError
from binder.registry import register_modality
from binder.tokenizers import LinearTokens
from modalities.augment.signals import SignalAugment, augment_signal
from modalities.base import Modality, Perturber
from modalities.common import check_range, resample_time, standardize
from modalities.preview import plot_signal
from modalities.signals import SIGNAL_PERTURBATIONS, read_signal


@dataclass(frozen=True)
class IMUOptions:
    """``length``: samples per window (ImageBind: 2000, i.e. 10 s at 200 Hz); ``kernel``: samples per token.
    ``normalize``: "none" keeps physical units (gravity stays visible), "per_channel" standardizes.
    ``max_abs``: largest magnitude accepted (m/s², rad/s); the units are kept, so a 1e30 reading
    would overflow the tokenizer's float32 arithmetic."""

    channels: int = 6
    length: int = 2000
    kernel: int = 8
    min_length: int = 16
    normalize: str = "none"
    max_abs: float = 1e6

    def __post_init__(self) -> None:
        if self.normalize not in ("none", "per_channel"):
            raise ConfigError(f"imu normalize must be 'none' or 'per_channel', got {self.normalize!r}")


@register_modality
class IMU(Modality):
    """Any number of samples linearly resampled to exactly `length` steps (6 channels: acc xyz, gyro xyz)."""

    name = "imu"
    extensions = (".imu.npy", ".imu.csv", ".imu.ts")
    Options = IMUOptions
    AugmentOptions = SignalAugment
    lane_groups = ((0, 1, 2), (3, 4, 5))  # preview lanes of a 6-channel file, each on one scale so the axes compare

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: SignalAugment) -> np.ndarray:
        """Scaling, jitter, time and magnitude warps, window crop, channel dropout (modalities.augment.signals)."""
        return augment_signal(raw, rng, options)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        arr = check_range(path, read_signal(path, self.options.channels), self.options.max_abs)
        if arr.shape[1] < self.options.min_length:
            raise ModalityError(path, f"only {arr.shape[1]} samples; need at least {self.options.min_length}")
        return arr

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        x = resample_time(torch.from_numpy(raw), self.options.length)
        return standardize(x, dims=(1,)) if self.options.normalize == "per_channel" else x

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.channels, self.options.length)

    def build_tokenizer(self, cfg: IMUOptions, width: int) -> nn.Module:
        return LinearTokens(cfg.channels, width, cfg.length, cfg.kernel)

    def preview(self, path: Path, size: int) -> Image.Image:
        """A line plot: accelerometer and gyroscope in two lanes (other channel counts as time series)."""
        return plot_signal(read_signal(path), size, self.lane_groups)

    def perturbations(self) -> dict[str, Perturber]:
        """Scale, noise, crop and channel dropout (``SIGNAL_PERTURBATIONS``)."""
        return SIGNAL_PERTURBATIONS
