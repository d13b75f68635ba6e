"""A complete third-party modality in one file: sonar echo profiles (float32 samples, raw bytes).

Installing this package is all it takes: the entry point in pyproject.toml makes anybind find it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from binder.errors import ModalityError
from binder.tokenizers import LinearTokens
from modalities.base import Modality
from modalities.common import check_file, check_finite, resample_time


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
