"""Training-time augmentations of sampled signals: IMU (6 × T) and generic time series (C × T).

Both modalities' ``load()`` returns a float32 ``(channels, time)`` array of any length; the
functions here keep that shape and dtype (``preprocess`` resamples the length afterwards). They
follow the usual sensor-data recipes (Um et al. 2017): per-channel scaling, additive jitter,
smooth time and magnitude warps, window cropping, channel dropout, and for IMU an optional small
rotation of the sensor frame. A dropped channel is set to 0 for IMU (a dead axis reads zero) or
to NaN for time series, whose tokenizer treats an all-NaN row as an absent channel (after
``preprocess``, which resamples and standardises each row on its own, a NaN row stays NaN).
All randomness comes from the numpy ``Generator`` passed in; inputs are never changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from binder.errors import ConfigError
from modalities.augment.checks import check_probability, check_range

DROPOUT_FILLS = {"zero": 0.0, "nan": float("nan")}


@dataclass(frozen=True)
class SignalAugment:
    """What ``augment_signal`` may do; ``p_*`` are probabilities, ranges are (low, high).

    ``scale_sigma``: per-channel factor ~ N(1, sigma). ``jitter_sigma``: Gaussian noise with
    sigma = this × the channel's std. ``time_warp_sigma`` / ``magnitude_sigma``: spread of the
    random speed / gain at ``warp_knots`` spline knots (0 = identity). ``crop_frac``: fraction
    of the series kept by the window crop, which is then stretched back to the full length.
    ``p_dropout`` drops one channel (never the only one), filled per ``dropout_fill``: "zero"
    (IMU) or "nan" (time series: an absent channel). ``rotate_deg``: a random 3-D rotation of
    every xyz triplet (acc, gyro) by up to this angle; 0 (off) by default because only IMU
    channels are triplets. ``default_options("timeseries")`` gives the time-series settings.
    """

    enabled: bool = True
    p_scale: float = 0.5
    scale_sigma: float = 0.1
    p_jitter: float = 0.5
    jitter_sigma: float = 0.05
    p_time_warp: float = 0.5
    time_warp_sigma: float = 0.2
    p_magnitude_warp: float = 0.5
    magnitude_sigma: float = 0.2
    warp_knots: int = 4
    p_crop: float = 0.5
    crop_frac: tuple[float, float] = (0.8, 1.0)
    p_dropout: float = 0.1
    dropout_fill: str = "zero"
    p_rotate: float = 0.5
    rotate_deg: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_frac", check_range("crop_frac", self.crop_frac))
        for name in ("p_scale", "p_jitter", "p_time_warp", "p_magnitude_warp", "p_crop", "p_dropout", "p_rotate"):
            check_probability(name, getattr(self, name))
        for name in ("scale_sigma", "jitter_sigma", "time_warp_sigma", "magnitude_sigma", "rotate_deg"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"SignalAugment.{name} must be >= 0, got {getattr(self, name)}")
        if self.warp_knots < 1:
            raise ConfigError(f"SignalAugment.warp_knots must be >= 1, got {self.warp_knots}")
        if not 0 < self.crop_frac[0] <= self.crop_frac[1] <= 1:
            raise ConfigError(f"SignalAugment.crop_frac must lie in (0, 1], got {self.crop_frac}")
        if self.dropout_fill not in DROPOUT_FILLS:
            raise ConfigError(f"SignalAugment.dropout_fill must be one of {tuple(DROPOUT_FILLS)}, "
                             f"got {self.dropout_fill!r}")



@dataclass(frozen=True)
class TimeSeriesAugment(SignalAugment):
    """SignalAugment for the generic time series: a dropped channel becomes absent (NaN), as in its files."""

    dropout_fill: str = "nan"

def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _resample_rows(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each row of ``x`` linearly interpolated at fractional time ``positions``."""
    grid = np.arange(x.shape[-1], dtype=np.float64)
    return np.stack([np.interp(positions, grid, row) for row in x.astype(np.float64)]).astype(np.float32)


def smooth_curve(values: np.ndarray, length: int) -> np.ndarray:
    """A cubic spline through ``values`` placed at evenly spaced knots over ``length`` steps
    (first and last knot at the ends); one value gives a constant curve."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1 or length < 2:
        return np.full(length, float(values.reshape(-1)[0]))
    knots = np.linspace(0.0, length - 1, values.size)
    kind = "not-a-knot" if values.size > 3 else "natural"
    return CubicSpline(knots, values, bc_type=kind)(np.arange(length, dtype=np.float64))


# ---------------------------------------------------------------- the pure transforms


def scale_channels(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Multiply channel c by ``factors[c]`` (sensor gain and calibration differences)."""
    return (_f32(x) * np.asarray(factors, dtype=np.float32)[:, None]).astype(np.float32)


def jitter(x: np.ndarray, rng: np.random.Generator, sigma_rel: float) -> np.ndarray:
    """Add Gaussian noise of sigma = ``sigma_rel`` × each channel's std (unit-free, so it suits any sensor)."""
    x = _f32(x)
    std = np.nan_to_num(np.nanstd(x, axis=-1, keepdims=True)) if x.size else np.zeros((x.shape[0], 1))
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return (x + noise * (np.float32(sigma_rel) * std.astype(np.float32))).astype(np.float32)


def time_warp(x: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """Re-time the series with a smooth monotone warp: ``speeds`` (>0) are the local playback speeds
    at evenly spaced knots, interpolated by a cubic spline and integrated into a warped time axis
    that still starts at 0 and ends at T - 1. All speeds equal gives back the input."""
    x = _f32(x)
    n = x.shape[-1]
    if n < 2:
        return x.copy()
    speed = np.maximum(smooth_curve(speeds, n), 0.05)  # a floor keeps the warp strictly increasing
    steps = (speed[:-1] + speed[1:]) / 2.0
    warped = np.concatenate([[0.0], np.cumsum(steps)])
    warped = warped * ((n - 1) / warped[-1])
    return _resample_rows(x, warped)


def magnitude_warp(x: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Multiply the series by smooth gain curves: ``curves`` is (T,) for all channels or (C, T)."""
    return (_f32(x) * np.asarray(curves, dtype=np.float32)).astype(np.float32)


def window_crop(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """Keep ``[start, start + length)`` and stretch it back to the original length (linear)."""
    x = _f32(x)
    n = x.shape[-1]
    length = int(np.clip(length, 1, n))
    start = int(np.clip(start, 0, n - length))
    return _resample_rows(x, np.linspace(start, start + length - 1, n))


def drop_channel(x: np.ndarray, channel: int, fill: float = 0.0) -> np.ndarray:
    """A copy with row ``channel`` set to ``fill`` (0 for a dead IMU axis, NaN for an absent series channel)."""
    out = np.array(x, dtype=np.float32)
    out[int(channel)] = fill
    return out


def rotation_matrix(axis: np.ndarray, degrees: float) -> np.ndarray:
    """The 3 × 3 rotation by ``degrees`` about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / max(np.linalg.norm(axis), 1e-12)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    theta = math.radians(degrees)
    return np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)


def rotate_triplets(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply one 3-D rotation to every consecutive xyz triplet of channels (acc 0-2, gyro 3-5):
    the same motion seen by a device mounted at another orientation. Extra channels are kept."""
    out = np.array(x, dtype=np.float32)
    rot = np.asarray(matrix, dtype=np.float32)
    for c in range(0, out.shape[0] - out.shape[0] % 3, 3):
        out[c:c + 3] = rot @ out[c:c + 3]
    return out


# ---------------------------------------------------------------- the draw


def augment_signal(x: np.ndarray, rng: np.random.Generator, opts: SignalAugment) -> np.ndarray:
    """A random variation of a (channels, time) signal drawn from ``opts``: rotation (if enabled),
    window crop, time warp, magnitude warp, scaling, jitter, then channel dropout. Same shape, float32."""
    original = x = _f32(x)
    if not opts.enabled or x.ndim != 2 or x.shape[-1] < 2:
        return x.copy()
    c, n = x.shape
    if opts.rotate_deg > 0 and c >= 3 and rng.random() < opts.p_rotate:
        axis = rng.standard_normal(3)
        x = rotate_triplets(x, rotation_matrix(axis, rng.uniform(-opts.rotate_deg, opts.rotate_deg)))
    if rng.random() < opts.p_crop:
        length = max(2, int(round(rng.uniform(*opts.crop_frac) * n)))
        x = window_crop(x, int(rng.integers(0, n - min(length, n) + 1)), length)
    if opts.time_warp_sigma > 0 and rng.random() < opts.p_time_warp:
        x = time_warp(x, rng.normal(1.0, opts.time_warp_sigma, size=opts.warp_knots))
    if opts.magnitude_sigma > 0 and rng.random() < opts.p_magnitude_warp:
        values = rng.normal(1.0, opts.magnitude_sigma, size=(c, opts.warp_knots))
        x = magnitude_warp(x, np.stack([smooth_curve(v, n) for v in values]))
    if opts.scale_sigma > 0 and rng.random() < opts.p_scale:
        x = scale_channels(x, np.asarray(rng.normal(1.0, opts.scale_sigma, size=c)))
    if opts.jitter_sigma > 0 and rng.random() < opts.p_jitter:
        x = jitter(x, rng, opts.jitter_sigma)
    if c >= 2 and rng.random() < opts.p_dropout:
        x = drop_channel(x, int(rng.integers(c)), DROPOUT_FILLS[opts.dropout_fill])
    return x.copy() if np.shares_memory(x, original) else x
