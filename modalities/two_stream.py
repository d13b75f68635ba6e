"""Two-stream video: RGB frames plus dense optical flow, tokenized as two tubelet streams.

The RGB stream is exactly the video modality's clip; the flow stream adds motion explicitly
(OpenCV Farneback between consecutive sampled frames), as in two-stream action recognition.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import ConfigError
from binder.registry import register_modality
from binder.tokenizers import SequenceEmbedding, TubeletTokens
from modalities.augment.video import VideoAugment, augment_frames
from modalities.base import Modality, Perturber
from modalities.video import (
    VIDEO_PERTURBATIONS,
    VideoOptions,
    as_frames,
    normalize_frames,
    poster_preview,
    read_frames,
    resize_frames,
)

FLOW_METHODS = ("farneback",)


@dataclasses.dataclass(frozen=True)
class TwoStreamOptions(VideoOptions):
    """Video options plus the optical-flow method and its parameters (OpenCV's usual defaults).

    Flow is measured in pixels at ``image_size``, divided by ``flow_scale`` and clamped to [-1, 1].
    """

    flow: str = "farneback"
    flow_scale: float = 20.0
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow not in FLOW_METHODS:
            raise ConfigError(f"flow must be one of {FLOW_METHODS}, got {self.flow!r}")
        if self.flow_scale <= 0:
            raise ConfigError("flow_scale must be > 0")


# OpenCV's Farneback as a plain typed callable: its stubs' overloads have changed between releases
# (whether the output array may be None), and this signature holds for every one of them.
_farneback = cast(Callable[..., np.ndarray], cv2.calcOpticalFlowFarneback)


def farneback_flow(rgb: torch.Tensor, cfg: TwoStreamOptions) -> torch.Tensor:
    """Flow between consecutive frames of ``(T + 1, 3, S, S)`` in [0, 1] → ``(2, T, S, S)`` (dx, dy).

    Values are pixels / ``flow_scale`` clamped to [-1, 1], so the stem sees a bounded input.
    """
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(1, 3, 1, 1)
    gray = ((rgb * weights).sum(1) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    flows = [
        _farneback(prev, nxt, None, cfg.pyr_scale, cfg.levels, cfg.winsize, cfg.iterations, cfg.poly_n,
                   cfg.poly_sigma, 0)
        for prev, nxt in zip(gray[:-1], gray[1:])
    ]
    flow = torch.from_numpy(np.stack(flows)).float()  # T, S, S, 2
    return (flow / cfg.flow_scale).clamp_(-1.0, 1.0).permute(3, 0, 1, 2).contiguous()


class TwoStreamTokenizer(nn.Module):
    """``(B, 5, T, S, S)`` → RGB and flow tubelets, each plus its stream vector → CLS + positions.

    Output ``(B, 1 + 2N, width)``: CLS, then the N RGB tokens, then the N flow tokens.
    """

    def __init__(self, width: int, input_thw: tuple[int, int, int], tubelet: tuple[int, int, int]):
        super().__init__()
        self.rgb = TubeletTokens(3, width, input_thw, tubelet)
        self.flow = TubeletTokens(2, width, input_thw, tubelet)
        self.stream = nn.Parameter(nn.init.trunc_normal_(torch.empty(2, width), std=0.02))
        self.seq = SequenceEmbedding(2 * self.rgb.num_tokens, width, positions=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = self.rgb.embed(x[:, :3]) + self.stream[0]
        flow = self.flow.embed(x[:, 3:]) + self.stream[1]
        return self.seq(torch.cat([rgb, flow], dim=1))


@register_modality
class TwoStream(Modality):
    """T+1 frames sampled uniformly over the whole clip give T RGB frames and T flows (frames repeat when short);
    fewer than min_frames is an error.

    Output of ``preprocess``: one ``(5, T, S, S)`` float tensor. Channels 0-2 are the RGB stream
    (the first T sampled frames, exactly as the video modality prepares them); channels 3-4 are
    the flow stream (dx, dy) from frame t to frame t+1 for t = 0..T-1, Farneback on grayscale
    frames after resize/crop to S, in pixels / ``flow_scale`` clamped to [-1, 1]. Flow spans the
    gap between sampled frames, so it grows with clip length; repeated frames give zero flow.
    """

    name = "two_stream"
    extensions = (".twostream.mp4", ".twostream.avi", ".twostream.mkv")
    Options = TwoStreamOptions
    AugmentOptions = VideoAugment

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: VideoAugment) -> np.ndarray:
        """Temporal offset, jitter and frame-rate change, spatial crop (modalities.augment.video)."""
        return augment_frames(raw, rng, options)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Decode T+1 uniformly spaced RGB frames, uint8 ``(T + 1, H, W, 3)``."""
        o = self.options
        return read_frames(path, o.num_frames + 1, o.min_frames, o.backend, o.max_pixels)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """Frames → ``(5, T, S, S)``: normalized RGB (channels 0-2) and scaled flow (3-4)."""
        o = self.options
        frames = resize_frames(as_frames(raw, o.num_frames + 1), o.image_size)
        rgb = normalize_frames(frames[:-1], o.mean, o.std)
        return torch.cat([rgb, farneback_flow(frames, o)], dim=0)

    def input_shape(self) -> tuple[int, ...]:
        o = self.options
        return (5, o.num_frames, o.image_size, o.image_size)

    def build_tokenizer(self, cfg: TwoStreamOptions, width: int) -> nn.Module:
        """Two-stream tubelet tokenizer for ``(B, 5, T, S, S)`` → ``(B, 1 + 2N, width)``."""
        return TwoStreamTokenizer(width, (cfg.num_frames, cfg.image_size, cfg.image_size), cfg.tubelet)

    def preview(self, path: Path, size: int) -> Image.Image:
        """The middle frame, as for video."""
        return poster_preview(path, size)

    def perturbations(self) -> dict[str, Perturber]:
        """The frame perturbations of video (crop, offset, stride); flow is then computed from the result."""
        return VIDEO_PERTURBATIONS
