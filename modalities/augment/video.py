"""Training-time augmentations of decoded video frames (video and two-stream modalities).

The video modalities' ``load()`` returns uint8 RGB frames ``(T, H, W, 3)`` sampled uniformly
over the clip (``num_frames``, the same frames for video and two-stream, whose flow is taken
between consecutive frames). While training, a modality may decode K > T frames over the same
clip (``VideoAugment.decode_count``, ``Modality.load_for_training``) and ``augment_frames``
picks ``count`` of them, so temporal jitter and frame-rate changes reach frames that inference
never sees instead of repeating its T. Every function keeps the layout and dtype. Indices never
go backwards, so two-stream flow always runs forward in time. All randomness comes from the numpy
``Generator`` passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from binder.errors import ConfigError
from modalities.augment.checks import check_probability, check_range
from modalities.augment.raster import crop_matrix, draw_crop_box, rotation_matrix


@dataclass(frozen=True)
class VideoAugment:
    """What ``augment_frames`` may do; ranges are (low, high) drawn uniformly, ``p_*`` are probabilities.

    Decoding: training reads ``decode_count(T)`` = ``round(decode_factor · T)`` frames (at least T)
    spread over the clip, of which ``augment_frames`` keeps T (1.0 = decode only T, as inference).
    Temporal: a start offset of up to ``max_offset_frac`` of the clip (either way), a frame-rate
    change by a stride factor drawn from ``stride`` (>1 = faster, covers more of the clip, <1 =
    a shorter window), per-frame index jitter of up to ``max_jitter`` output frame steps.
    Spatial: one random resized crop (area ``crop_scale``, aspect ``crop_aspect``) for all frames.
    Rotation (off by default): one angle of up to ±``max_rotate_deg`` for the whole clip (a tilted
    camera), with probability ``p_rotate``.
    Photometric (off by default): one ``gain`` for the clip times a per-frame ``1 ± flicker``,
    plus a ``brightness_shift``; Gaussian noise of σ drawn from ``noise_sigma``. Shifts and σ are
    fractions of full scale (255 for uint8).
    """

    enabled: bool = True
    decode_factor: float = 2.0
    p_temporal: float = 0.5
    max_offset_frac: float = 0.25
    stride: tuple[float, float] = (0.8, 1.25)
    max_jitter: float = 0.5
    p_crop: float = 0.5
    crop_scale: tuple[float, float] = (0.75, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 1.333)
    p_photometric: float = 0.0
    gain: tuple[float, float] = (0.6, 1.4)
    flicker: float = 0.15
    brightness_shift: tuple[float, float] = (-0.1, 0.1)
    p_noise: float = 0.0
    noise_sigma: tuple[float, float] = (0.0, 0.05)
    p_rotate: float = 0.0
    max_rotate_deg: float = 15.0

    def __post_init__(self) -> None:
        for name in ("stride", "crop_scale", "crop_aspect", "gain", "brightness_shift", "noise_sigma"):
            object.__setattr__(self, name, check_range(name, getattr(self, name)))
        for name in ("p_temporal", "p_crop", "p_photometric", "p_noise", "p_rotate"):
            check_probability(name, getattr(self, name))
        if not 0 <= self.max_rotate_deg <= 180:
            raise ConfigError(f"VideoAugment.max_rotate_deg must lie in [0, 180], got {self.max_rotate_deg}")
        if not self.decode_factor >= 1:  # also refuses NaN
            raise ConfigError(f"VideoAugment.decode_factor must be >= 1, got {self.decode_factor}")
        self._check_photometric()
        if not 0 <= self.max_offset_frac <= 1:
            raise ConfigError(f"VideoAugment.max_offset_frac must lie in [0, 1], got {self.max_offset_frac}")
        if self.stride[0] <= 0 or self.max_jitter < 0:
            raise ConfigError(f"VideoAugment.stride must be > 0 and max_jitter >= 0, "
                             f"got {self.stride}, {self.max_jitter}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1 or self.crop_aspect[0] <= 0:
            raise ConfigError(f"VideoAugment.crop_scale must lie in (0, 1] and crop_aspect be > 0, "
                             f"got {self.crop_scale}, {self.crop_aspect}")

    def _check_photometric(self) -> None:
        if self.gain[0] <= 0 or not 0 <= self.flicker < 1:
            raise ConfigError(f"VideoAugment.gain must be > 0 and flicker in [0, 1), got {self.gain}, {self.flicker}")
        if not -1 <= self.brightness_shift[0] <= self.brightness_shift[1] <= 1:
            raise ConfigError(f"VideoAugment.brightness_shift must lie in [-1, 1], got {self.brightness_shift}")
        if not 0 <= self.noise_sigma[0] <= self.noise_sigma[1] <= 1:
            raise ConfigError(f"VideoAugment.noise_sigma must lie in [0, 1], got {self.noise_sigma}")

    def decode_count(self, needed: int) -> int:
        """How many frames training decodes when the modality needs ``needed``: ``round(decode_factor ·
        needed)``, never fewer than ``needed``."""
        return max(needed, round(self.decode_factor * needed))


def frame_indices(n: int, start: float, stride: float = 1.0, jitter: np.ndarray | None = None) -> np.ndarray:
    """``n`` indices into ``n`` frames: ``round(start + i * stride + jitter[i])``, clamped to [0, n - 1]
    and made non-decreasing (so time never runs backwards; edge frames repeat when out of range)."""
    return clip_indices(n, n, start, stride, jitter)


def select_frames(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The frames at ``indices``, as a new contiguous array of the input's dtype."""
    return np.ascontiguousarray(np.asarray(frames)[np.asarray(indices, dtype=np.int64)])


def temporal_shift(frames: np.ndarray, offset: int) -> np.ndarray:
    """Frames shifted ``offset`` steps later (earlier if negative), count kept, edge frames repeated."""
    return select_frames(frames, frame_indices(len(frames), float(offset)))


def draw_frame_indices(n: int, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """Random indices: stride from ``opts.stride``, start offset ±``max_offset_frac``·n around the
    centred position, jitter uniform in ±``max_jitter``."""
    return draw_clip_indices(n, n, rng, opts)


def clip_indices(k: int, count: int, start: float, stride: float = 1.0,
                 jitter: np.ndarray | None = None) -> np.ndarray:
    """``count`` indices into ``k`` decoded frames, for a pick whose span is set by ``stride``.

    The step between picks is ``stride · (k - 1) / (count - 1)``: at stride 1 the picks spread over
    all ``k`` frames like inference's uniform sampling, faster (>1) runs past the ends (edge frames
    repeat), slower (<1) covers a shorter window. ``start`` is the first position, ``jitter`` is in
    units of the stride-1 step; positions are rounded half up, clamped to [0, k - 1] and made
    non-decreasing. At ``start = 0``, stride 1 and no jitter it equals ``uniform_indices(k, count)``
    up to the rounding of exact halves (half up here, half to even there).
    """
    unit = (k - 1) / (count - 1) if count > 1 else 1.0
    pos = start + np.arange(count, dtype=np.float64) * (stride * unit)
    if jitter is not None:
        pos = pos + np.asarray(jitter, dtype=np.float64) * unit
    idx = np.clip(np.floor(pos + 0.5), 0, k - 1).astype(np.int64)
    return np.maximum.accumulate(idx)


def draw_clip_indices(k: int, count: int, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """Random ``count`` of ``k`` indices: stride from ``opts.stride``, the picked span centred on the
    clip then offset by up to ±``max_offset_frac``·k, jitter uniform in ±``max_jitter`` steps.

    ``draw_frame_indices(n)`` is ``draw_clip_indices(n, n)``: with ``decode_factor = 1`` training picks
    exactly as it did before K > T decoding."""
    stride = rng.uniform(*opts.stride)
    centred = (k - 1) * (1.0 - stride) / 2.0  # the start that keeps the picked span centred on the clip
    reach = opts.max_offset_frac * k
    start = centred + rng.uniform(-reach, reach)
    jitter = rng.uniform(-opts.max_jitter, opts.max_jitter, size=count) if opts.max_jitter > 0 else None
    return clip_indices(k, count, start, stride, jitter)


def uniform_pick(k: int, count: int) -> np.ndarray:
    """The indices inference's uniform sampling would take if it had decoded ``k`` frames."""
    from modalities.video import uniform_indices  # here: modalities.video imports this module

    return uniform_indices(k, count)


def rotate_frames(frames: np.ndarray, degrees: float) -> np.ndarray:
    """Every frame turned by ``degrees`` (counter-clockwise) about its centre, edges replicated;
    integer frames are rounded back to their dtype."""
    frames = np.asarray(frames)
    return _warp_frames(frames, rotation_matrix(frames.shape[1:3], degrees))


def _warp_frames(frames: np.ndarray, forward: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    work = frames.astype(np.float32)
    out = np.stack([cv2.warpAffine(f, forward, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    for f in work]).reshape(frames.shape)
    if np.issubdtype(frames.dtype, np.integer):
        info = np.iinfo(frames.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
    return out.astype(frames.dtype)


def crop_frames(frames: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Every frame's ``box = (left, top, width, height)`` region, resized back to (H, W) bilinearly.

    Integer frames are rounded back to their dtype, so uint8 stays uint8.
    """
    frames = np.asarray(frames)
    return _warp_frames(frames, crop_matrix(frames.shape[1:3], box))


def full_scale(dtype: np.dtype) -> float:
    """The value range photometric shifts are fractions of: the integer maximum, 1.0 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _as_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values back to ``dtype``: integers rounded and clipped to their range (uint8 stays uint8)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def photometric(frames: np.ndarray, gains: np.ndarray, shift: float) -> np.ndarray:
    """Frame ``t`` times ``gains[t]`` plus ``shift`` (a fraction of full scale), in the input's dtype."""
    scale = full_scale(frames.dtype)
    out = frames.astype(np.float32) * np.asarray(gains, np.float32).reshape(-1, 1, 1, 1) + np.float32(shift * scale)
    return _as_dtype(out, frames.dtype)


def add_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel Gaussian noise of ``sigma`` (a fraction of full scale), in the input's dtype."""
    noise = rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(sigma * full_scale(frames.dtype))
    return _as_dtype(frames.astype(np.float32) + noise, frames.dtype)


def draw_photometric(frames: np.ndarray, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """One clip gain from ``opts.gain`` times a per-frame ``1 ± flicker``, plus a brightness shift."""
    gains = rng.uniform(*opts.gain) * (1.0 + rng.uniform(-opts.flicker, opts.flicker, size=len(frames)))
    return photometric(frames, gains, rng.uniform(*opts.brightness_shift))


def draw_view(k: int, count: int, frame_hw: tuple[int, int], rng: np.random.Generator,
              opts: VideoAugment) -> tuple[np.ndarray | None, tuple[float, float, float, float] | None]:
    """One variation's temporal pick of ``count`` of ``k`` frames (None: the uniform one) and crop box
    (None: no crop), each drawn with its probability. Video and two-stream (whose cached flows need
    the indices and the box, not the frames) draw them here, in the same order."""
    idx = draw_clip_indices(k, count, rng, opts) if rng.random() < opts.p_temporal else None
    box = draw_crop_box(frame_hw, rng, opts.crop_scale, opts.crop_aspect) if rng.random() < opts.p_crop else None
    return idx, box


def draw_appearance(frames: np.ndarray, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """Photometric changes and noise, each when its ``p_*`` is on (p = 0 draws nothing, so a stream
    without them is the one drawn before they existed)."""
    if opts.p_photometric > 0 and rng.random() < opts.p_photometric:
        frames = draw_photometric(frames, rng, opts)
    if opts.p_noise > 0 and rng.random() < opts.p_noise:
        frames = add_noise(frames, rng.uniform(*opts.noise_sigma), rng)
    return frames


def augment_frames(frames: np.ndarray, rng: np.random.Generator, opts: VideoAugment,
                   count: int | None = None) -> np.ndarray:
    """A random variation of K decoded frames (video or two-stream raw), ``count`` frames long
    (default K): a temporal pick (offset, stride, jitter over all K), one random resized crop for
    the whole clip, then a rotation, photometric changes and noise when their ``p_*`` are on. Same frame shape
    and dtype as the input; without augmentation the pick is the uniform one, as inference's."""
    frames = np.asarray(frames)
    k = len(frames)
    count = k if count is None else int(count)
    if count < 1:
        raise ValueError(f"augment_frames needs count >= 1, got {count}")
    if not opts.enabled:
        return select_frames(frames, uniform_pick(k, count))
    idx, box = draw_view(k, count, frames.shape[1:3], rng, opts)
    if idx is None and count == k:
        out = frames
    else:
        out = select_frames(frames, idx if idx is not None else uniform_pick(k, count))
    if box is not None:
        out = crop_frames(out, box)
    if opts.p_rotate > 0 and rng.random() < opts.p_rotate:  # drawn only when on: p 0 keeps older runs' draws
        out = rotate_frames(out, rng.uniform(-opts.max_rotate_deg, opts.max_rotate_deg))
    out = draw_appearance(out, rng, opts)
    return out.copy() if np.shares_memory(out, frames) else out

