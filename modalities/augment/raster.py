"""Training-time augmentations of single-channel rasters: depth and thermal maps.

The raster modalities' ``load()`` returns ``(array, bitdepth)``: a float32 ``(H, W)`` map of the
file's own values (depth in file units or metres, disparity, or thermal counts) and its integer
bit depth (0 for float data). The functions here work on the array, keep its shape, its dtype
(float32) and its units (depth is never normalised, so ``to_signal`` still converts it exactly);
the draw functions ``augment_depth`` / ``augment_thermal`` accept and return the tuple (or a
bare array). All randomness comes from the numpy ``Generator`` passed in; inputs are never changed.

Depth pixels with value 0 are invalid (what real sensors report for no return); geometric
warps of depth are validity-aware, so holes move with the image and are never blended into
fake in-between depths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from binder.errors import ConfigError
from modalities.augment.checks import check_probability, check_range


@dataclass(frozen=True)
class GeometryAugment:
    """The crop, rotation, translation and viewpoint change depth and thermal maps share: a random
    resized crop (area ``crop_scale``, aspect ``crop_aspect``, probability ``p_crop``), then a
    rotation within ±``max_rotate_deg`` and a shift within ±``max_translate_frac`` of the size
    (``p_affine``), then a perspective warp whose corners move by up to ``max_perspective`` of the
    size in x and y (``p_perspective``): the same surface seen from another angle. Off by default
    (p 0), so older configs draw as they did."""

    enabled: bool = True
    p_crop: float = 0.5
    crop_scale: tuple[float, float] = (0.75, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 1.333)
    p_affine: float = 0.5
    max_rotate_deg: float = 8.0
    max_translate_frac: float = 0.06
    p_perspective: float = 0.0
    max_perspective: float = 0.0


@dataclass(frozen=True)
class DepthAugment(GeometryAugment):
    """What ``augment_depth`` may do; ranges are (low, high) drawn uniformly, ``p_*`` are probabilities.

    Random resized crop (area ``crop_scale``, aspect ``crop_aspect``), a small rotation
    (±``max_rotate_deg``) and translation (±``max_translate_frac`` of the size), depth-
    proportional sensor noise (sigma ``noise_rel`` of the value, as structured-light and ToF
    errors grow with distance), and holes: up to ``max_pixel_drop`` of single pixels plus up to
    ``max_holes`` blobs of radius up to ``hole_radius_frac`` of the short side set to 0.
    """

    p_noise: float = 0.5
    noise_rel: tuple[float, float] = (0.0, 0.004)
    p_holes: float = 0.5
    max_pixel_drop: float = 0.02
    max_holes: int = 2
    hole_radius_frac: float = 0.08

    def __post_init__(self) -> None:
        _check_geometry(self)
        object.__setattr__(self, "noise_rel", check_range("noise_rel", self.noise_rel))
        for name in ("p_noise", "p_holes", "max_pixel_drop"):
            check_probability(name, getattr(self, name))
        if self.noise_rel[0] < 0 or self.max_holes < 0 or not 0 <= self.hole_radius_frac <= 1:
            raise ConfigError("DepthAugment.noise_rel and max_holes must be >= 0 and hole_radius_frac in [0, 1], "
                             f"got {self.noise_rel}, {self.max_holes}, {self.hole_radius_frac}")


@dataclass(frozen=True)
class ThermalAugment(GeometryAugment):
    """What ``augment_thermal`` may do; ranges are (low, high) drawn uniformly, ``p_*`` are probabilities.

    The same crop/rotation/translation as depth, sensor noise of sigma ``noise_rel`` of the
    map's value range, and a gain/offset (``gain``, ``offset_frac`` of the value range) for
    other cameras' calibration and scene temperature; integer-bit maps stay within their range.
    ``p_blur`` (off by default) defocuses with sigma ``blur_frac`` of the shorter side (``defocus``).
    """

    p_noise: float = 0.5
    noise_rel: tuple[float, float] = (0.0, 0.02)
    p_gain: float = 0.8
    gain: tuple[float, float] = (0.8, 1.25)
    offset_frac: tuple[float, float] = (-0.1, 0.1)
    p_blur: float = 0.0
    blur_frac: tuple[float, float] = (0.0, 0.03)

    def __post_init__(self) -> None:
        _check_geometry(self)
        for name in ("noise_rel", "gain", "offset_frac", "blur_frac"):
            object.__setattr__(self, name, check_range(name, getattr(self, name)))
        for name in ("p_noise", "p_gain", "p_blur"):
            check_probability(name, getattr(self, name))
        if self.noise_rel[0] < 0 or self.gain[0] <= 0 or not 0 <= self.blur_frac[0] <= self.blur_frac[1] <= 1:
            raise ConfigError(f"ThermalAugment.noise_rel must be >= 0, blur_frac lie in [0, 1] and gain be > 0, "
                              f"got {self.noise_rel}, {self.blur_frac}, {self.gain}")


def _check_geometry(opts: GeometryAugment) -> None:
    for name in ("crop_scale", "crop_aspect"):
        object.__setattr__(opts, name, check_range(name, getattr(opts, name)))
    for name in ("p_crop", "p_affine", "p_perspective"):
        check_probability(name, getattr(opts, name))
    if not 0 < opts.crop_scale[0] <= opts.crop_scale[1] <= 1:
        raise ConfigError(f"crop_scale must lie in (0, 1], got {opts.crop_scale}")
    if opts.crop_aspect[0] <= 0:
        raise ConfigError(f"crop_aspect must be > 0, got {opts.crop_aspect}")
    if opts.max_rotate_deg < 0 or not 0 <= opts.max_translate_frac < 1:
        raise ConfigError(f"max_rotate_deg must be >= 0 and max_translate_frac in [0, 1), "
                         f"got {opts.max_rotate_deg}, {opts.max_translate_frac}")
    if not 0 <= opts.max_perspective < 0.5:
        raise ConfigError(f"max_perspective must lie in [0, 0.5), got {opts.max_perspective}")


# ---------------------------------------------------------------- geometry


def _warp(arr: np.ndarray, forward: np.ndarray, valid_aware: bool, invalid_outside: bool = False) -> np.ndarray:
    """Bilinear warp of an (H, W) map by a 2×3 (affine) or 3×3 (homography) source→output matrix,
    borders replicated.

    ``valid_aware``: 0 marks invalid pixels; values and validity are warped separately and an
    output pixel is valid (value = weighted mean of valid neighbours) when most of its weight is.
    ``invalid_outside`` (with ``valid_aware``): what comes from outside the map is invalid (0), as
    a depth sensor has no return where it did not look, instead of the nearest edge value.
    """
    arr = np.asarray(arr, dtype=np.float32)
    h, w = arr.shape
    flags = cv2.INTER_LINEAR
    border = cv2.BORDER_CONSTANT if valid_aware and invalid_outside else cv2.BORDER_REPLICATE
    warp = cv2.warpPerspective if np.shape(forward) == (3, 3) else cv2.warpAffine

    def run(a: np.ndarray) -> np.ndarray:
        return warp(a, forward, (w, h), flags=flags, borderMode=border)
    if not valid_aware:
        return run(arr)
    valid = (arr > 0).astype(np.float32)
    num, den = run(arr * valid), run(valid)
    return np.where(den >= 0.5, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def crop_matrix(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> np.ndarray:
    """The 2×3 source→output matrix that maps ``box = (left, top, width, height)`` of an (H, W, ...)
    image onto the whole (H, W) (pixel centres aligned)."""
    h, w = shape[0], shape[1]
    left, top, bw, bh = box
    sx, sy = w / bw, h / bh
    return np.array([[sx, 0.0, sx * (0.5 - left) - 0.5], [0.0, sy, sy * (0.5 - top) - 0.5]])


def rotation_matrix(shape: tuple[int, ...], degrees: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """The 2×3 matrix that turns an (H, W, ...) image by ``degrees`` (counter-clockwise) about its
    centre, then moves it by (dx, dy) pixels."""
    h, w = shape[0], shape[1]
    forward = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0)
    return np.asarray(forward, dtype=np.float64) + np.array([[0.0, 0.0, dx], [0.0, 0.0, dy]])


def perspective_matrix(shape: tuple[int, ...], shifts: np.ndarray) -> np.ndarray:
    """The 3×3 homography that moves the corners of an (H, W, ...) image (top-left, top-right,
    bottom-right, bottom-left) by ``shifts`` (4×2, in pixels) and everything else with them."""
    h, w = shape[0], shape[1]
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)
    moved = (corners + np.asarray(shifts, np.float32).reshape(4, 2)).astype(np.float32)
    return np.asarray(cv2.getPerspectiveTransform(corners, moved), dtype=np.float64)


def draw_perspective(shape: tuple[int, ...], rng: np.random.Generator, max_shift: float) -> np.ndarray:
    """A random viewpoint change for ``perspective_matrix``: each corner moved by up to ``max_shift``
    of the width in x and of the height in y, uniformly and independently."""
    h, w = shape[0], shape[1]
    return rng.uniform(-max_shift, max_shift, size=(4, 2)) * np.array([w - 1, h - 1])


def perspective(arr: np.ndarray, shifts: np.ndarray, valid_aware: bool = False) -> np.ndarray:
    """Warp so the image's corners move by ``shifts`` (4×2 pixels, ``perspective_matrix``): a planar
    scene seen from another angle, edges replicated; with ``valid_aware`` zeros stay holes."""
    return _warp(arr, perspective_matrix(np.shape(arr), shifts), valid_aware)


def resized_crop(arr: np.ndarray, box: tuple[float, float, float, float], valid_aware: bool = False) -> np.ndarray:
    """The ``box = (left, top, width, height)`` region (in pixels) resized back to the full (H, W), bilinear.

    Values keep their units; with ``valid_aware`` zeros stay invalid holes (see ``_warp``).
    """
    return _warp(arr, crop_matrix(np.shape(arr), box), valid_aware)


def draw_crop_box(shape: tuple[int, int], rng: np.random.Generator, scale: tuple[float, float],
                  aspect: tuple[float, float]) -> tuple[float, float, float, float]:
    """A random crop box (left, top, width, height) of area fraction in ``scale`` and aspect
    (width/height, log-uniform) in ``aspect``, clipped to fit inside the image."""
    h, w = shape
    area = rng.uniform(*scale) * h * w
    ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
    bw = min(math.sqrt(area * ratio), float(w))
    bh = min(math.sqrt(area / ratio), float(h))
    return float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh


def affine(arr: np.ndarray, degrees: float = 0.0, dx: float = 0.0, dy: float = 0.0,
           valid_aware: bool = False, invalid_outside: bool = False) -> np.ndarray:
    """Rotate by ``degrees`` (counter-clockwise) about the centre, then translate by (dx, dy) pixels.

    Shape is kept; pixels that come from outside the image take the nearest edge value (are invalid
    with ``invalid_outside``, see ``_warp``).
    """
    return _warp(arr, rotation_matrix(np.shape(arr), degrees, dx, dy), valid_aware, invalid_outside)


def rotate(arr: np.ndarray, degrees: float, valid_aware: bool = False) -> np.ndarray:
    """Rotate about the centre by ``degrees``, edges replicated (see ``affine``)."""
    return affine(arr, degrees, valid_aware=valid_aware)


def translate(arr: np.ndarray, dx: float, dy: float, valid_aware: bool = False,
              invalid_outside: bool = False) -> np.ndarray:
    """Move the content by (dx, dy) pixels, edges replicated or left invalid (see ``affine``)."""
    return affine(arr, 0.0, dx, dy, valid_aware=valid_aware, invalid_outside=invalid_outside)


# ---------------------------------------------------------------- sensor effects


def value_range(arr: np.ndarray, valid_only: bool = False) -> float:
    """max - min of the map (of its valid, > 0, pixels with ``valid_only``); 1.0 for a constant map."""
    values = np.asarray(arr)[np.asarray(arr) > 0] if valid_only else np.asarray(arr)
    span = float(values.max() - values.min()) if values.size else 0.0
    return span if span > 0 else 1.0


def add_sensor_noise(arr: np.ndarray, rng: np.random.Generator, sigma_rel: float,
                     relative_to: str = "range") -> np.ndarray:
    """Gaussian read noise. ``relative_to="range"``: sigma = ``sigma_rel`` × the map's value range
    (thermal); ``"value"``: sigma = ``sigma_rel`` × each pixel's value, so 0 (invalid depth) stays 0
    and far pixels are noisier (depth sensors)."""
    arr = np.asarray(arr, dtype=np.float32)
    noise = rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma_rel)
    if relative_to == "value":
        return arr * (1.0 + noise)
    if relative_to == "range":
        return arr + noise * np.float32(value_range(arr))
    raise ConfigError(f"relative_to must be 'range' or 'value', got {relative_to!r}")


def drop_pixels(arr: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Set exactly round(``fraction`` × H × W) randomly chosen pixels to 0 (invalid), like depth speckle dropouts."""
    out = np.array(arr, dtype=np.float32)
    count = int(round(float(np.clip(fraction, 0.0, 1.0)) * out.size))
    if count:
        out.reshape(-1)[rng.choice(out.size, size=count, replace=False)] = 0.0
    return out


def add_holes(arr: np.ndarray, rng: np.random.Generator, count: int, max_radius: float) -> np.ndarray:
    """Set ``count`` random elliptical blobs (semi-axes up to ``max_radius`` pixels) to 0: the missing
    regions real depth sensors leave at dark, shiny or occluded surfaces."""
    out = np.array(arr, dtype=np.float32)
    h, w = out.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(count)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.0, max(max_radius, 1.0), size=2)
        out[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = 0.0
    return out


def defocus(arr: np.ndarray, sigma_frac: float, valid_aware: bool = False) -> np.ndarray:
    """Gaussian blur of sigma ``sigma_frac`` × the map's shorter side: soft optics or a missed focus
    (a fraction, so one setting means the same at any resolution); 0 returns a copy. A fraction
    above 1 blurs as 1 does: a sigma of the whole side already leaves a flat map, and a larger one
    would only ask OpenCV for a kernel it cannot allocate. Negative or non-finite is a ValueError.

    ``valid_aware`` (depth): 0 pixels are holes, left at 0 and never blended into their neighbours
    (each valid pixel is the blur of the valid pixels only, normalised by their weight)."""
    if not (math.isfinite(sigma_frac) and sigma_frac >= 0):
        raise ValueError(f"defocus needs a blur fraction >= 0, got {sigma_frac}")
    out = np.array(arr, dtype=np.float32)
    sigma = min(float(sigma_frac), 1.0) * min(out.shape[:2])
    if sigma <= 0:
        return out

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if not valid_aware:
        return blur(out)
    valid = (out > 0).astype(np.float32)
    weight = blur(valid)
    return np.where(valid > 0, blur(out * valid) / np.maximum(weight, 1e-12), 0.0).astype(np.float32)


def gain_offset(arr: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """``arr * gain + offset`` in float32: another camera's responsivity and a different scene temperature."""
    return np.asarray(arr, dtype=np.float32) * np.float32(gain) + np.float32(offset)


# ---------------------------------------------------------------- the draws


def _split(raw: Any) -> tuple[np.ndarray, int | None]:
    if isinstance(raw, tuple):
        arr, bits = raw
        return np.asarray(arr, dtype=np.float32), int(bits)
    return np.asarray(raw, dtype=np.float32), None


def _join(arr: np.ndarray, bits: int | None) -> Any:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return arr if bits is None else (arr, bits)


def _geometry(arr: np.ndarray, rng: np.random.Generator, opts: DepthAugment | ThermalAugment,
              valid_aware: bool) -> np.ndarray:
    if rng.random() < opts.p_crop:
        arr = resized_crop(arr, draw_crop_box(arr.shape, rng, opts.crop_scale, opts.crop_aspect), valid_aware)
    if rng.random() < opts.p_affine:
        h, w = arr.shape
        t = opts.max_translate_frac
        degrees = rng.uniform(-opts.max_rotate_deg, opts.max_rotate_deg)
        arr = affine(arr, degrees, rng.uniform(-t, t) * w, rng.uniform(-t, t) * h, valid_aware)
    if opts.p_perspective > 0 and rng.random() < opts.p_perspective:  # drawn only when on
        arr = perspective(arr, draw_perspective(arr.shape, rng, opts.max_perspective), valid_aware)
    return arr


def augment_depth(raw: Any, rng: np.random.Generator, opts: DepthAugment) -> Any:
    """A random variation of a decoded depth map (``(array, bits)`` or an array; same form back):
    crop, rotation/translation, depth-proportional noise, then holes. Units are unchanged."""
    arr, bits = _split(raw)
    if not opts.enabled:
        return _join(arr.copy(), bits)
    out = _geometry(arr, rng, opts, valid_aware=True)
    if rng.random() < opts.p_noise:
        out = np.maximum(add_sensor_noise(out, rng, rng.uniform(*opts.noise_rel), "value"), 0.0)
    if rng.random() < opts.p_holes:
        out = drop_pixels(out, rng, rng.uniform(0.0, opts.max_pixel_drop))
        radius = opts.hole_radius_frac * min(out.shape)
        out = add_holes(out, rng, int(rng.integers(0, opts.max_holes + 1)), radius)
    return _join(out.copy() if np.shares_memory(out, arr) else out, bits)


def augment_thermal(raw: Any, rng: np.random.Generator, opts: ThermalAugment) -> Any:
    """A random variation of a decoded thermal frame (``(array, bits)`` or an array; same form back):
    crop, rotation/translation, defocus, read noise, then gain/offset; integer-bit maps are clipped to
    [0, 2**bits - 1] so ``to_signal`` still maps them into [0, 1]."""
    arr, bits = _split(raw)
    if not opts.enabled:
        return _join(arr.copy(), bits)
    out = _geometry(arr, rng, opts, valid_aware=False)
    if opts.p_blur > 0 and rng.random() < opts.p_blur:  # drawn only when on: p 0 keeps older runs' draws
        out = defocus(out, rng.uniform(*opts.blur_frac))
    if rng.random() < opts.p_noise:
        out = add_sensor_noise(out, rng, rng.uniform(*opts.noise_rel), "range")
    if rng.random() < opts.p_gain:
        scale = float(2 ** bits - 1) if bits else value_range(arr)
        out = gain_offset(out, rng.uniform(*opts.gain), rng.uniform(*opts.offset_frac) * scale)
    if bits:
        out = np.clip(out, 0.0, float(2 ** bits - 1))
    return _join(out.copy() if np.shares_memory(out, arr) else out, bits)
