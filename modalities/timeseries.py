"""Generic multivariate time series with any number of channels (PatchTST-style tokens)."""
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
from binder.tokenizers import SequenceEmbedding
from modalities.augment.signals import TimeSeriesAugment, augment_signal
from modalities.base import Modality, Perturber
from modalities.common import check_range, resample_time, standardize
from modalities.preview import plot_signal
from modalities.signals import SIGNAL_PERTURBATIONS, read_signal


@dataclass(frozen=True)
class TimeSeriesOptions:
    """``length``: steps every series is resampled to; ``patch``: steps per token;
    ``max_channels``: size of the channel-embedding table (more channels is an error).
    ``max_abs``: largest magnitude accepted; each channel is standardized in float32, whose
    variance overflows for values much beyond 1e15, so the default leaves room for counts and prices."""

    length: int = 512
    patch: int = 16
    max_channels: int = 16
    min_length: int = 8
    max_abs: float = 1e9

    def __post_init__(self) -> None:
        if self.length % self.patch:
            raise ConfigError(f"timeseries length {self.length} must be a multiple of patch {self.patch}")


class ChannelPatchTokens(nn.Module):
    """(B, max_channels, T) with NaN rows for absent channels → per-channel patch tokens + mask."""

    def __init__(self, cfg: TimeSeriesOptions, width: int):
        super().__init__()
        self.patch = cfg.patch
        self.proj = nn.Linear(cfg.patch, width)
        self.norm = nn.LayerNorm(width)
        n_patches = cfg.length // cfg.patch
        self.channel = nn.Parameter(nn.init.trunc_normal_(torch.empty(cfg.max_channels, 1, width), std=0.02))
        self.seq = SequenceEmbedding(cfg.max_channels * n_patches, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        absent = torch.isnan(x).all(dim=-1)  # B, C
        x = torch.nan_to_num(x, nan=0.0)
        tokens = self.norm(self.proj(x.unfold(-1, self.patch, self.patch)))  # B, C, P, W
        tokens = tokens + self.channel
        b, c, p, w = tokens.shape
        pad = absent[:, :, None].expand(b, c, p).reshape(b, c * p)
        return self.seq(tokens.reshape(b, c * p, w), pad)


def _looks_like_a_map(path: str | os.PathLike, shape: tuple[int, ...]) -> str:
    """A hint for a 2-D array that was probably meant as an image-like map, not a time series."""
    name = os.path.basename(path)
    stem = name[: -len(".npy")] if name.endswith(".npy") else os.path.splitext(name)[0]
    return (f" (read as a time series because of the plain extension; if this {shape[0]}x{shape[1]} array is a "
            f"depth or thermal map, name it {stem}.depth.npy or {stem}.thermal.npy, or pass --modality depth "
            f"or --modality thermal)")


@register_modality
class TimeSeries(Modality):
    """Each channel linearly resampled to `length` steps and standardized; absent channels are NaN rows."""

    name = "timeseries"
    extensions = (".npy", ".csv", ".ts")
    Options = TimeSeriesOptions
    AugmentOptions = TimeSeriesAugment

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: TimeSeriesAugment) -> np.ndarray:
        """Scaling, jitter, time and magnitude warps, window crop, channel dropout (modalities.augment.signals)."""
        return augment_signal(raw, rng, options)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        opts = self.options
        arr = check_range(path, read_signal(path), opts.max_abs)
        if arr.shape[0] > opts.max_channels:
            raise ModalityError(path, f"{arr.shape[0]} channels; this model takes at most {opts.max_channels}"
                                + _looks_like_a_map(path, arr.shape))
        if arr.shape[1] < opts.min_length:
            raise ModalityError(path, f"only {arr.shape[1]} time steps; need at least {opts.min_length}")
        return arr

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        x = standardize(resample_time(torch.from_numpy(raw), self.options.length), dims=(1,))
        out = torch.full(self.input_shape(), float("nan"))
        out[: x.shape[0]] = x
        return out

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.max_channels, self.options.length)

    def build_tokenizer(self, cfg: TimeSeriesOptions, width: int) -> nn.Module:
        return ChannelPatchTokens(cfg, width)

    def preview(self, path: Path, size: int) -> Image.Image:
        """A line plot: one lane of up to three channels, else a lane per channel (the first eight)."""
        return plot_signal(read_signal(path), size)

    def perturbations(self) -> dict[str, Perturber]:
        """Scale, noise, crop and channel dropout (``SIGNAL_PERTURBATIONS``)."""
        return SIGNAL_PERTURBATIONS
