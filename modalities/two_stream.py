"""Two-stream video: RGB frames plus dense optical flow, tokenized as two tubelet streams.

The RGB stream is exactly the video modality's clip (the same T frames, prepared the same way);
the flow stream adds motion explicitly (OpenCV Farneback between consecutive sampled frames), as
in two-stream action recognition.
By default the streams are fused late (``fusion = "late"``): each runs through the trunk on its
own, each head pools its stream into the shared space, and a learned gate sums the two vectors
(``binder.heads.FusionHead``), so the RGB stream can start from a video binding's weights and
the fused embedding starts where RGB alone is. ``fusion = "early"`` is the older single sequence
of RGB and flow tokens.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import ConfigError
from binder.registry import register_modality
from binder.tokenizers import SequenceEmbedding, StreamTokens, TubeletTokens
from modalities.augment.flow import FlowClip, FlowPick, flow_pairs, frame_flow, pick_flow_clip
from modalities.augment.video import VideoAugment, augment_frames
from modalities.base import Modality, Perturber
from modalities.video import (
    VIDEO_PERTURBATIONS,
    VideoOptions,
    VideoTokenizer,
    as_frames,
    normalize_frames,
    poster_preview,
    read_frames,
    resize_frames,
)

FLOW_METHODS = ("farneback",)
FUSIONS = ("late", "early")
STREAMS = ("rgb", "flow")


@dataclasses.dataclass(frozen=True)
class TwoStreamOptions(VideoOptions):
    """Video options plus the optical-flow method and its parameters (OpenCV's usual defaults, sized
    for frames of a few hundred pixels: at 32 px a 15 px window over 3 pyramid levels smooths the
    flow of a small moving object into one blob, and ``winsize = 5, levels = 1`` keeps its outline).

    Flow is measured in pixels at ``image_size``, divided by ``flow_scale`` and clamped to [-1, 1].
    ``fusion``: ``"late"`` (two sequences, fused after pooling) or ``"early"`` (one sequence).
    ``flow_magnitude``: add the flow's length (pixels / ``flow_scale``, clamped to [0, 1]) as a third
    flow channel. The direction of motion is seldom what tells classes apart, while where things
    move (the moving object's outline) often is; a linear tubelet stem on signed (dx, dy) cannot
    compute that length, so without it the flow stream sees opposite motions as opposite inputs.
    """

    fusion: str = "late"
    flow_magnitude: bool = True
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
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.flow not in FLOW_METHODS:
            raise ConfigError(f"flow must be one of {FLOW_METHODS}, got {self.flow!r}")
        if self.flow_scale <= 0:
            raise ConfigError("flow_scale must be > 0")
        if not isinstance(self.flow_magnitude, bool):
            raise ConfigError(f"flow_magnitude must be true or false, got {self.flow_magnitude!r}")

    @property
    def flow_channels(self) -> int:
        """Channels of the flow stream: dx, dy and, with ``flow_magnitude``, their length."""
        return 3 if self.flow_magnitude else 2


# OpenCV's Farneback as a plain typed callable: its stubs' overloads have changed between releases
# (whether the output array may be None), and this signature holds for every one of them.
_farneback = cast(Callable[..., np.ndarray], cv2.calcOpticalFlowFarneback)


def gray_frames(rgb: torch.Tensor) -> np.ndarray:
    """``(N, 3, S, S)`` frames in [0, 1] → uint8 ``(N, S, S)`` luma, the input of Farneback."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(1, 3, 1, 1)
    return ((rgb * weights).sum(1) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def pair_flow(prev: np.ndarray, nxt: np.ndarray, cfg: TwoStreamOptions) -> np.ndarray:
    """Farneback flow from one uint8 grayscale frame to the next: float32 ``(S, S, 2)`` in pixels."""
    return _farneback(prev, nxt, None, cfg.pyr_scale, cfg.levels, cfg.winsize, cfg.iterations, cfg.poly_n,
                      cfg.poly_sigma, 0).astype(np.float32)


def scale_flow(flow: np.ndarray, cfg: TwoStreamOptions) -> torch.Tensor:
    """``(T, S, S, 2)`` flow in pixels → the stream's ``(C, T, S, S)``: dx, dy / ``flow_scale`` clamped to
    [-1, 1], then (``flow_magnitude``) their length / ``flow_scale`` clamped to [0, 1]."""
    out = torch.from_numpy(np.ascontiguousarray(flow)).float() / cfg.flow_scale
    channels = [out.clamp(-1.0, 1.0)]
    if cfg.flow_magnitude:
        channels.append(torch.linalg.vector_norm(out, dim=-1, keepdim=True).clamp_(0.0, 1.0))
    return torch.cat(channels, dim=-1).permute(3, 0, 1, 2).contiguous()


def farneback_flow(rgb: torch.Tensor, cfg: TwoStreamOptions) -> torch.Tensor:
    """The T flows of ``(T, 3, S, S)`` frames in [0, 1] (``flow_pairs``: t → t + 1, the last frame's
    the motion into it) → ``(C, T, S, S)`` (dx, dy and, with ``flow_magnitude``, their length).

    Values are pixels / ``flow_scale`` clamped to [-1, 1], so the stem sees a bounded input.
    """
    gray = gray_frames(rgb)
    pairs = flow_pairs(len(gray))
    flows = {p: frame_flow(gray, *p, lambda x, y: pair_flow(x, y, cfg)) for p in set(pairs)}  # the last pair once
    return scale_flow(np.stack([flows[p] for p in pairs]), cfg)


class LateTwoStreamTokenizer(nn.Module):
    """``(B, 3 + C, T, S, S)`` → two sequences: the RGB clip and the flow clip (C channels), each tokenized
    exactly as the video modality tokenizes a clip (so a video binding's tokenizer loads into ``streams.rgb``)."""

    def __init__(self, width: int, input_thw: tuple[int, int, int], tubelet: tuple[int, int, int],
                 flow_channels: int = 3):
        super().__init__()
        self.streams = nn.ModuleDict({"rgb": VideoTokenizer(3, width, input_thw, tubelet),
                                      "flow": VideoTokenizer(flow_channels, width, input_thw, tubelet)})

    def forward(self, x: torch.Tensor) -> StreamTokens:
        return StreamTokens((self.streams["rgb"](x[:, :3]), self.streams["flow"](x[:, 3:])))


class TwoStreamTokenizer(nn.Module):
    """Early fusion: ``(B, 3 + C, T, S, S)`` → RGB and flow tubelets, each plus its stream vector → CLS +
    positions.

    Output ``(B, 1 + 2N, width)``: CLS, then the N RGB tokens, then the N flow tokens.
    """

    def __init__(self, width: int, input_thw: tuple[int, int, int], tubelet: tuple[int, int, int],
                 flow_channels: int = 3):
        super().__init__()
        self.rgb = TubeletTokens(3, width, input_thw, tubelet)
        self.flow = TubeletTokens(flow_channels, width, input_thw, tubelet)
        self.stream = nn.Parameter(nn.init.trunc_normal_(torch.empty(2, width), std=0.02))
        self.seq = SequenceEmbedding(2 * self.rgb.num_tokens, width, positions=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = self.rgb.embed(x[:, :3]) + self.stream[0]
        flow = self.flow.embed(x[:, 3:]) + self.stream[1]
        return self.seq(torch.cat([rgb, flow], dim=1))


@register_modality
class TwoStream(Modality):
    """T frames sampled uniformly over the whole clip, exactly video's, give the T RGB frames and T
    flows (frames repeat when short); fewer than min_frames is an error.

    Output of ``preprocess``: one ``(6, T, S, S)`` float tensor (``(5, ...)`` without
    ``flow_magnitude``). Channels 0-2 are the RGB stream, equal to what the video modality prepares
    from the same file, so a video binding's weights read it as they read video; channels 3-4 are
    the flow stream (dx, dy) from frame t to frame t+1 (the last frame: from T-2 to T-1, the motion
    into it), Farneback on grayscale frames after resize/crop to S, in pixels / ``flow_scale``
    clamped to [-1, 1]; channel 5 is the flow's length on the same scale, clamped to [0, 1]. Flow
    spans the gap between sampled frames, so it grows with clip length; repeated frames give zero
    flow.
    """

    name = "two_stream"
    extensions = (".twostream.mp4", ".twostream.avi", ".twostream.mkv")
    Options = TwoStreamOptions
    AugmentOptions = VideoAugment

    def augment_options(self, values: Mapping[str, Any] | bool | None = True) -> Any | None:
        """Video's augmentation options, less rotation: turning the frames would also have to turn
        the cached flow vectors, which the flow cache does not do, so ``p_rotate`` is refused."""
        opts = super().augment_options(values)
        if isinstance(opts, VideoAugment) and opts.p_rotate > 0:
            raise ConfigError(f"{self.name}: augment.p_rotate is not supported (the flow stream's cached "
                              f"vectors are not turned with the frames); set it to 0")
        return opts

    def augment(self, raw: np.ndarray | FlowClip, rng: np.random.Generator,
                options: VideoAugment) -> np.ndarray | FlowPick:
        """T of the decoded frames (temporal offset, jitter, frame-rate change), a spatial crop and,
        when asked for, photometric changes and noise; a ``FlowClip`` (``load_for_training``) gives a
        ``FlowPick`` whose flows come from its cache (modalities.augment.flow)."""
        count = self.options.num_frames
        if isinstance(raw, FlowClip):
            return pick_flow_clip(raw, count, rng, options)
        return augment_frames(raw, rng, options, count=count)

    def load_for_training(self, path: str | os.PathLike, augment_options: object) -> np.ndarray | FlowClip:
        """With augmentation on, a ``FlowClip``: ``decode_count(T)`` frames (2T by default, as video
        decodes for training) resized to ``image_size``, whose flows are computed once per frame pair
        over the run."""
        if not (isinstance(augment_options, VideoAugment) and augment_options.enabled):
            return self.load_checked(path)
        o = self.options
        count = augment_options.decode_count(o.num_frames)
        with self._named_errors(path):
            frames = read_frames(path, count, o.min_frames, o.backend, o.max_pixels)
            rgb = resize_frames(frames, o.image_size)
            return FlowClip(rgb.permute(0, 2, 3, 1).numpy().copy(), gray_frames(rgb))

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Decode T uniformly spaced RGB frames (video's), uint8 ``(T, H, W, 3)``."""
        o = self.options
        return read_frames(path, o.num_frames, o.min_frames, o.backend, o.max_pixels)

    def preprocess(self, raw: np.ndarray | FlowPick) -> torch.Tensor:
        """Frames → ``(3 + C, T, S, S)``: normalized RGB (channels 0-2) and the scaled flow stream (3 on)."""
        o = self.options
        if isinstance(raw, FlowPick):  # training: RGB already resized, flows from the clip's cache
            rgb = torch.from_numpy(raw.rgb).permute(0, 3, 1, 2)
            flows = raw.flows(lambda a, b: pair_flow(a, b, o))
            return torch.cat([normalize_frames(rgb, o.mean, o.std), scale_flow(flows, o)], dim=0)
        frames = resize_frames(as_frames(raw, o.num_frames), o.image_size)
        return torch.cat([normalize_frames(frames, o.mean, o.std), farneback_flow(frames, o)], dim=0)

    def input_shape(self) -> tuple[int, ...]:
        o = self.options
        return (3 + o.flow_channels, o.num_frames, o.image_size, o.image_size)

    def streams(self) -> tuple[str, ...]:
        """``("rgb", "flow")`` under late fusion; early fusion is one sequence."""
        return STREAMS if self.options.fusion == "late" else ()

    def build_tokenizer(self, cfg: TwoStreamOptions, width: int) -> nn.Module:
        """Late: two video tokenizers (RGB, flow) → ``StreamTokens``; early: one ``(B, 1 + 2N, width)`` sequence."""
        thw = (cfg.num_frames, cfg.image_size, cfg.image_size)
        if cfg.fusion == "late":
            return LateTwoStreamTokenizer(width, thw, cfg.tubelet, cfg.flow_channels)
        return TwoStreamTokenizer(width, thw, cfg.tubelet, cfg.flow_channels)

    def preview(self, path: Path, size: int) -> Image.Image:
        """The middle frame, as for video."""
        return poster_preview(path, size)

    def perturbations(self) -> dict[str, Perturber]:
        """The frame perturbations of video (crop, offset, stride); flow is then computed from the result."""
        return VIDEO_PERTURBATIONS
