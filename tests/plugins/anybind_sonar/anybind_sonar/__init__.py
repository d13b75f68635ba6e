"""A complete third-party modality in one file: sonar echo profiles (float32 samples, raw bytes).

Installing this package is all it takes: the entry point in pyproject.toml makes anybind find it.
Beside what every modality must have, it declares the two optional hooks: its own preview (a line
plot of the profile, for the search page) and its own perturbation (``delay``, for
``anybind eval --perturb``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import ModalityError
from binder.tokenizers import LinearTokens
from modalities.base import Modality, Perturber
from modalities.common import check_file, check_finite, resample_time
from modalities.preview import plot_signal


def delay(raw: np.ndarray, value: float, rng: np.random.Generator, modality: Any) -> np.ndarray:
    """The echo arriving later: the profile shifted by ``value`` of its length, silence (0) before it."""
    n = len(raw)
    k = min(n, max(0, round(value * n)))
    return np.concatenate([np.zeros(k, raw.dtype), raw[: n - k]])


@dataclass(frozen=True)
class SonarOptions:
    length: int = 256
    kernel: int = 16


class Sonar(Modality):
    """Echo intensity profile resampled to `length` samples."""

    name = "sonar"
    extensions = (".sonar",)
    Options = SonarOptions

    def load(self, path: str | os.PathLike) -> np.ndarray:
        raw = check_file(path).read_bytes()
        if len(raw) % 4:
            raise ModalityError(path, "size is not a whole number of float32 samples")
        return check_finite(path, np.frombuffer(raw, dtype="<f4").copy())

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        return resample_time(torch.from_numpy(raw)[None], self.options.length)

    def input_shape(self) -> tuple[int, ...]:
        return (1, self.options.length)

    def build_tokenizer(self, cfg: SonarOptions, width: int) -> nn.Module:
        return LinearTokens(1, width, cfg.length, cfg.kernel)

    def preview(self, path: Path, size: int) -> Image.Image:
        """The echo profile as a line plot, read with the modality's own checks."""
        return plot_signal(self.load(path)[None], size)

    def perturbations(self) -> Mapping[str, Perturber]:
        return {"delay": Perturber(delay, "shift the echo later by this share of the profile")}
