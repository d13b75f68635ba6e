"""Single-channel rasters (depth, thermal): shared reading, resizing, tokenizing, perturbations and
the picture their previews draw (``relief_preview``: what stands out of the dominant plane)."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import ConfigError, ModalityError
from binder.tokenizers import PatchTokens2d
from modalities.augment import raster as aug
from modalities.base import Modality, Perturber, PerturbFn
from modalities.common import (
    MAX_PIXELS,
    check_file,
    check_finite,
    check_range,
    open_image,
    read_npy,
    resize_center_crop,
    standardize,
)
from modalities.preview import INVALID_RGB, colormap, stretch

# Largest magnitude accepted in float rasters (.npy, float TIFF); integer PNGs are bounded by their bit depth.
MAX_ABS = 1e6
PLANE_ROUNDS = 3  # refits of a preview's dominant plane on the pixels nearest the last fit
PLANE_INLIERS = 0.6  # the share of valid pixels each refit keeps
PLANE_POINTS = 50_000  # at most this many pixels, evenly spaced, enter a fit
DENOISE = {"none": 0, "median3": 3, "median5": 5}  # option value -> median window (OpenCV takes 3 or 5 on float)


@dataclass(frozen=True)
class RasterOptions:
    """Output size and patch of a raster modality, the bounds its files must respect, and its denoising.

    ``max_abs`` bounds float data (depth in metres, radiometric temperatures): larger values would
    overflow the float32 standardization. ``max_pixels`` is checked on the header before decoding.
    ``denoise``: "median3" or "median5" replaces each value of the signal (``to_signal``'s output:
    after depth's holes are filled and any plane removed, since on a tilted surface a median would
    shift the slope by one order step) by the median of its 3×3 or 5×5 neighbourhood, so a
    sensor's speckle, noise or dead pixels do not read as the scene; "none" (the default) keeps it.
    ``stride``: patches start every ``stride`` pixels (``None``: every ``patch``, no overlap); a
    stride under the patch overlaps them (AST's audio patches), so a scene moved by part of a
    patch changes fewer tokens wholesale, for more tokens to run through the trunk.
    """

    image_size: int = 224
    patch: int = 16
    stride: int | None = None
    max_abs: float = MAX_ABS
    max_pixels: int = MAX_PIXELS
    denoise: str = "none"

    def __post_init__(self) -> None:
        if self.stride is not None and not 0 < self.stride <= self.patch:
            raise ConfigError(f"{type(self).__name__}.stride must lie in [1, patch = {self.patch}], got {self.stride}")
        if self.denoise not in DENOISE:
            raise ConfigError(f"{type(self).__name__}.denoise must be one of {', '.join(DENOISE)}, "
                              f"got {self.denoise!r}")


def read_raster(path: str | os.PathLike, max_abs: float = MAX_ABS,
                max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int]:
    """A single-channel (H, W) float32 raster and its integer bit depth (0 for float data).

    Reads 8/16-bit PNG or TIFF with Pillow and numeric ``.npy``; colour images are refused
    because silently greying them would embed the wrong signal. Float data beyond ``max_abs`` and
    images above ``max_pixels`` are refused.
    """
    p = check_file(path)
    if p.suffix.lower() == ".npy":
        arr, bits = read_npy(p), 0
    else:
        with open_image(p, max_pixels) as im:
            mode, arr = im.mode, np.asarray(im)
        if arr.ndim == 3 or mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
            chans = arr.shape[2] if arr.ndim == 3 else mode
            raise ModalityError(path, f"expected a single-channel raster, got {chans} channels (mode {mode})")
        bits = {"L": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32}.get(mode, 0)
        arr = check_finite(path, arr.astype(np.float32))
    if not bits:
        check_range(path, arr, max_abs)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
    if arr.ndim != 2:
        raise ModalityError(path, f"expected a single-channel (H, W) raster, got shape {arr.shape}")
    if min(arr.shape) < 8:
        raise ModalityError(path, f"raster {arr.shape} is too small (min side 8)")
    if arr.size > max_pixels:
        raise ModalityError(path, f"raster {arr.shape} has more than max_pixels {max_pixels:,} pixels")
    return arr, bits


def fit_plane(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The least-squares plane (float64) a·u + b·v + c of ``x`` over the valid pixels, evaluated everywhere;
    the valid pixels' mean where they do not fix a plane (fewer than three, or all on one line),
    so a nearly empty map is never extrapolated from a line."""
    v, u = np.nonzero(valid)
    design = np.stack([u, v, np.ones_like(u)], axis=1).astype(np.float64)
    coef, _, rank, _ = np.linalg.lstsq(design, x[valid].astype(np.float64), rcond=None)
    if rank < 3:
        return np.full(x.shape, x[valid].astype(np.float64).mean())
    vv, uu = np.mgrid[0:x.shape[0], 0:x.shape[1]]
    return coef[0] * uu + coef[1] * vv + coef[2]


def fit_plane_residual(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``x`` minus its least-squares plane over the valid pixels (``fit_plane``)."""
    return (x - fit_plane(x, valid)).astype(np.float32)


def dominant_plane_residual(values: np.ndarray, valid: np.ndarray, rounds: int = PLANE_ROUNDS,
                            inliers: float = PLANE_INLIERS, max_points: int = PLANE_POINTS) -> np.ndarray:
    """``values`` less the plane ``a·u + b·v + c`` most of its valid pixels lie on (float64).

    A least-squares fit to the valid pixels, then ``rounds`` refits to the share ``inliers`` of
    them nearest the last plane, so a digit standing out of a tilted wall (a minority of pixels)
    leaves the wall's own plane, not a compromise tilted toward the digit. A pinhole camera sees
    any plane as a plane in disparity, so for depth this removes a wall's or a table's tilt
    exactly. Fewer than three valid pixels: the values less their mean.
    """
    x = np.asarray(values, dtype=np.float64)
    v, u = np.nonzero(valid)
    if u.size < 3:
        return x - (x[valid].mean() if u.size else 0.0)
    if u.size > max_points:
        pick = np.linspace(0, u.size - 1, max_points).astype(np.int64)
        v, u = v[pick], u[pick]
    design = np.stack([u, v, np.ones_like(u)], axis=1).astype(np.float64)
    target = x[v, u]
    keep = np.ones(u.size, bool)
    coef = np.zeros(3)
    for round_ in range(rounds + 1):
        coef = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        if round_ == rounds:
            break
        error = np.abs(target - design @ coef)
        nearest = error <= np.quantile(error, inliers)
        if nearest.sum() < 3 or np.array_equal(nearest, keep):
            break
        keep = nearest
    vv, uu = np.mgrid[0:x.shape[0], 0:x.shape[1]]
    return x - (coef[0] * uu + coef[1] * vv + coef[2])


def relief_preview(values: np.ndarray, valid: np.ndarray, cmap: str) -> Image.Image:
    """A raster's preview: its dominant plane removed (``dominant_plane_residual``), what is left
    stretched between its 1st and 99th percentiles over the valid pixels (between its extremes when
    those two are equal), colour-mapped with ``cmap`` (larger values brighter); invalid pixels grey."""
    residual = dominant_plane_residual(values, valid)
    shown = stretch(residual, valid)
    if valid.any() and np.ptp(shown[valid]) == 0:
        shown = stretch(residual, valid, 0.0, 100.0)
    rgb = colormap(shown, cmap)
    rgb[~valid] = INVALID_RGB
    return Image.fromarray(rgb, "RGB")


def center_box(shape: tuple[int, ...], keep: float) -> tuple[float, float, float, float]:
    """(x, y, width, height) of the centred box that keeps the share ``keep`` of an (H, W, ...) area."""
    h, w = shape[0], shape[1]
    bw, bh = w * np.sqrt(keep), h * np.sqrt(keep)
    return (w - bw) / 2, (h - bh) / 2, bw, bh


def _raster(fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]) -> PerturbFn:
    def run(raw: Any, v: float, rng: np.random.Generator, mod: Any) -> Any:
        arr, bits = (raw if isinstance(raw, tuple) else (raw, None))
        out = np.ascontiguousarray(fn(np.asarray(arr, np.float32), v, rng), dtype=np.float32)
        return out if bits is None else (out, bits)
    return run


def _shift(invalid_outside: bool) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    """Move the map by ``v`` × its size in x and in y, each way at random (a misregistered or
    off-centre capture); what comes in from outside is the edge, or invalid with ``invalid_outside``."""
    def run(a: np.ndarray, v: float, rng: np.random.Generator) -> np.ndarray:
        h, w = a.shape
        dx, dy = (v * n * float(rng.choice((-1.0, 1.0))) for n in (w, h))
        return aug.translate(a, dx, dy, valid_aware=True, invalid_outside=invalid_outside)
    return run


def _noise(a: np.ndarray, v: float, rng: np.random.Generator) -> np.ndarray:
    return aug.add_sensor_noise(a, rng, v)


def _offset(a: np.ndarray, v: float, rng: np.random.Generator) -> np.ndarray:
    return aug.gain_offset(a, 1.0, v * aug.value_range(a))


RASTER_PERTURBATIONS: dict[str, Perturber] = {
    "rotate": Perturber(_raster(lambda a, v, rng: aug.rotate(a, v, valid_aware=True)), "rotation in degrees"),
    "noise": Perturber(_raster(_noise), "Gaussian noise, share of the value range"),
    "holes": Perturber(_raster(lambda a, v, rng: aug.drop_pixels(a, rng, v)), "share of pixels dropped to 0"),
    "crop": Perturber(_raster(lambda a, v, rng: aug.resized_crop(a, center_box(a.shape, v), valid_aware=True)),
                      "keep this share of the area (centre), resized back"),
    "shift": Perturber(_raster(_shift(invalid_outside=False)),
                       "move by this share of the size in x and y (random signs), edges replicated"),
    "blur": Perturber(_raster(lambda a, v, rng: aug.defocus(a, v, valid_aware=True)),
                      "Gaussian blur, sigma as a share of the shorter side (holes stay holes)"),
    "gain": Perturber(_raster(lambda a, v, rng: aug.gain_offset(a, v, 0.0)), "multiply values"),
    "offset": Perturber(_raster(_offset), "add this share of the value range"),
}
"""Named perturbations of a raster (depth, thermal): raw ``(array, bits)`` in, the same out."""


def _holes_kept(fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
                ) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    """``fn`` on a depth map's valid pixels only: a hole (0, no return) stays a hole rather than
    becoming a return at whatever the noise or offset put there, and a pixel pushed to 0 or
    below becomes one."""
    def run(a: np.ndarray, v: float, rng: np.random.Generator) -> np.ndarray:
        return np.where(a > 0, np.maximum(fn(a, v, rng), 0.0), 0.0)
    return run


DEPTH_PERTURBATIONS: dict[str, Perturber] = {
    **RASTER_PERTURBATIONS,
    "noise": Perturber(_raster(_holes_kept(_noise)), "Gaussian noise, share of the value range (holes stay holes)"),
    "offset": Perturber(_raster(_holes_kept(_offset)), "add this share of the value range (holes stay holes)"),
    "shift": Perturber(_raster(_shift(invalid_outside=True)),
                       "move by this share of the size in x and y (random signs); no return where it moved from"),
}
"""Depth's named perturbations: the raster ones, with noise and offset leaving holes (0) as holes and a
shift leaving what it uncovers without a return (0), as a misregistered depth map does."""


class RasterModality(Modality):
    """Base for single-channel rasters: subclasses say how raw values become the signal."""

    Options = RasterOptions

    def load(self, path: str | os.PathLike) -> tuple[np.ndarray, int]:
        """The raster and its bit depth (``read_raster``), bounded by ``max_abs`` and ``max_pixels``."""
        return read_raster(path, self.options.max_abs, self.options.max_pixels)

    def to_signal(self, arr: np.ndarray, bits: int) -> np.ndarray:
        """Raw file values → the physical signal the tokenizer sees (before standardizing)."""
        return arr

    def preprocess(self, raw: tuple[np.ndarray, int]) -> torch.Tensor:
        arr, bits = raw
        signal: np.ndarray = np.ascontiguousarray(self.to_signal(arr, bits), dtype=np.float32)
        if DENOISE[self.options.denoise]:
            signal = cv2.medianBlur(signal, DENOISE[self.options.denoise])
        x = torch.from_numpy(signal)[None]
        x = resize_center_crop(x, self.options.image_size)
        return standardize(x, dims=(1, 2))

    def input_shape(self) -> tuple[int, ...]:
        s = self.options.image_size
        return (1, s, s)

    def build_tokenizer(self, cfg: RasterOptions, width: int) -> nn.Module:
        return PatchTokens2d(1, width, (cfg.image_size, cfg.image_size), cfg.patch, cfg.stride)

    def perturbations(self) -> dict[str, Perturber]:
        """Rotation, noise, holes, centre crop, blur, gain, offset and shift (``RASTER_PERTURBATIONS``)."""
        return RASTER_PERTURBATIONS
