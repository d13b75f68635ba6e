"""Training-time augmentations of decoded video frames (video and two-stream modalities).

The video modalities' ``load()`` returns uint8 RGB frames ``(T, H, W, 3)`` sampled uniformly
over the clip (``num_frames`` for video, ``num_frames + 1`` for two-stream, whose flow is taken
between consecutive frames). Every function here keeps that layout, dtype and frame count, so
``preprocess`` accepts the result unchanged. Temporal variation re-picks frames among the
decoded ones (offset, per-frame jitter, stride); indices never go backwards, so two-stream flow
always runs forward in time. All randomness comes from the numpy ``Generator`` passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from binder.errors import ConfigError
from modalities.augment.checks import check_probability, check_range
from modalities.augment.raster import draw_crop_box


@dataclass(frozen=True)
class VideoAugment:
    """What ``augment_frames`` may do; ranges are (low, high) drawn uniformly, ``p_*`` are probabilities.

    Temporal: a start offset of up to ``max_offset_frac`` of the frame count (either way), a
    frame-rate change by a stride factor drawn from ``stride`` (>1 = faster, covers more of the
    clip), per-frame index jitter of up to ``max_jitter`` frames. Spatial: one random resized
    crop (area ``crop_scale``, aspect ``crop_aspect``) shared by all frames.
    """

    enabled: bool = True
    p_temporal: float = 0.5
    max_offset_frac: float = 0.25
    stride: tuple[float, float] = (0.8, 1.25)
    max_jitter: float = 0.5
    p_crop: float = 0.5
    crop_scale: tuple[float, float] = (0.75, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 1.333)

    def __post_init__(self) -> None:
        for name in ("stride", "crop_scale", "crop_aspect"):
            object.__setattr__(self, name, check_range(name, getattr(self, name)))
        for name in ("p_temporal", "p_crop"):
            check_probability(name, getattr(self, name))
        if not 0 <= self.max_offset_frac <= 1:
            raise ConfigError(f"VideoAugment.max_offset_frac must lie in [0, 1], got {self.max_offset_frac}")
        if self.stride[0] <= 0 or self.max_jitter < 0:
            raise ConfigError(f"VideoAugment.stride must be > 0 and max_jitter >= 0, "
                             f"got {self.stride}, {self.max_jitter}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1 or self.crop_aspect[0] <= 0:
            raise ConfigError(f"VideoAugment.crop_scale must lie in (0, 1] and crop_aspect be > 0, "
                             f"got {self.crop_scale}, {self.crop_aspect}")


def frame_indices(n: int, start: float, stride: float = 1.0, jitter: np.ndarray | None = None) -> np.ndarray:
    """``n`` indices into ``n`` frames: ``round(start + i * stride + jitter[i])``, clamped to [0, n - 1]
    and made non-decreasing (so time never runs backwards; edge frames repeat when out of range)."""
    pos = start + np.arange(n, dtype=np.float64) * stride
    if jitter is not None:
        pos = pos + np.asarray(jitter, dtype=np.float64)
    idx = np.clip(np.floor(pos + 0.5), 0, n - 1).astype(np.int64)
    return np.maximum.accumulate(idx)


def select_frames(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The frames at ``indices``, as a new contiguous array of the input's dtype."""
    return np.ascontiguousarray(np.asarray(frames)[np.asarray(indices, dtype=np.int64)])


def temporal_shift(frames: np.ndarray, offset: int) -> np.ndarray:
    """Frames shifted ``offset`` steps later (earlier if negative), count kept, edge frames repeated."""
    return select_frames(frames, frame_indices(len(frames), float(offset)))


def draw_frame_indices(n: int, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """Random indices: stride from ``opts.stride``, start offset ±``max_offset_frac``·n around the
    centred position, jitter uniform in ±``max_jitter``."""
    stride = rng.uniform(*opts.stride)
    centred = (n - 1) * (1.0 - stride) / 2.0  # the start that keeps the picked span centred on the clip
    reach = opts.max_offset_frac * n
    start = centred + rng.uniform(-reach, reach)
    jitter = rng.uniform(-opts.max_jitter, opts.max_jitter, size=n) if opts.max_jitter > 0 else None
    return frame_indices(n, start, stride, jitter)


def crop_frames(frames: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Every frame's ``box = (left, top, width, height)`` region, resized back to (H, W) bilinearly.

    Integer frames are rounded back to their dtype, so uint8 stays uint8.
    """
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    left, top, bw, bh = box
    sx, sy = w / bw, h / bh
    forward = np.array([[sx, 0.0, sx * (0.5 - left) - 0.5], [0.0, sy, sy * (0.5 - top) - 0.5]])
    work = frames.astype(np.float32)
    out = np.stack([cv2.warpAffine(f, forward, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    for f in work]).reshape(frames.shape)
    if np.issubdtype(frames.dtype, np.integer):
        info = np.iinfo(frames.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
    return out.astype(frames.dtype)


def augment_frames(frames: np.ndarray, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """A random variation of decoded frames (video or two-stream raw): re-picked frame indices
    (offset, stride, jitter), then one random resized crop for the whole clip. Same count, shape
    and dtype as the input."""
    frames = np.asarray(frames)
    if not opts.enabled:
        return frames.copy()
    out = frames
    if rng.random() < opts.p_temporal:
        out = select_frames(out, draw_frame_indices(len(out), rng, opts))
    if rng.random() < opts.p_crop:
        out = crop_frames(out, draw_crop_box(out.shape[1:3], rng, opts.crop_scale, opts.crop_aspect))
    return out.copy() if np.shares_memory(out, frames) else out

