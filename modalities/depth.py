"""Depth maps as disparity images (ImageBind's depth input)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from binder.errors import ConfigError, ModalityError
from binder.registry import register_modality
from modalities.augment.raster import DepthAugment, augment_depth
from modalities.base import Perturber
from modalities.preview import shrink
from modalities.raster import (
    DEPTH_PERTURBATIONS,
    RasterModality,
    RasterOptions,
    fit_plane_residual,
    read_raster,
    relief_preview,
)


@dataclass(frozen=True)
class DepthOptions(RasterOptions):
    """``kind``: what the file holds ("depth" in metres after scaling, or "disparity").
    ``png_scale``: integer PNG units per metre (1000 = millimetres, the Kinect/RealSense norm).
    ``detrend``: "plane" subtracts the least-squares plane of the disparity, so a small object on
    a tilted wall or table is not drowned by the surface it stands on; "none" keeps it.
    ``hole_fill``: what invalid pixels (no sensor return) carry: "local" (the default), the plane of
    the valid pixels continued into the hole plus what its valid neighbours differ from that plane
    (``fill_from_neighbours``), so a hole on a sloped or near surface does not read as a step;
    "mean", the map's mean disparity (the default before model format 3, which folders saved
    earlier keep). ``denoise`` (``RasterOptions``) comes after the holes are filled and the plane
    removed."""

    kind: str = "depth"
    png_scale: float = 1000.0
    min_depth: float = 0.05
    detrend: str = "none"
    hole_fill: str = "local"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("depth", "disparity"):
            raise ConfigError(f"depth kind must be 'depth' or 'disparity', got {self.kind!r}")
        if self.detrend not in ("none", "plane"):
            raise ConfigError(f"depth detrend must be 'none' or 'plane', got {self.detrend!r}")
        if self.hole_fill not in ("mean", "local"):
            raise ConfigError(f"depth hole_fill must be 'mean' or 'local', got {self.hole_fill!r}")


@register_modality
class Depth(RasterModality):
    """Depth → disparity 1/d (invalid pixels filled from their neighbours, ``hole_fill``), optional
    plane removal, resize + crop, standardized."""

    name = "depth"
    extensions = (".depth.png", ".depth.npy", ".depth.tif", ".depth.tiff", ".disparity.png", ".disparity.npy")
    Options = DepthOptions
    AugmentOptions = DepthAugment
    former_defaults = {3: {"hole_fill": "mean"}}  # val 0.671 (mean) -> 0.771 (local): docs/guides/training.md

    def augment(self, raw: tuple[np.ndarray, int], rng: np.random.Generator,
                options: DepthAugment) -> tuple[np.ndarray, int]:
        """Resized crop, rotation, translation, depth-proportional noise and holes (modalities.augment.raster)."""
        return augment_depth(raw, rng, options)

    def to_signal(self, arr: np.ndarray, bits: int) -> np.ndarray:
        opts = self.options
        if opts.kind == "disparity":
            disp, valid = arr, np.isfinite(arr) & (arr > 0)
        else:
            depth = arr / opts.png_scale if bits else arr
            valid = depth >= opts.min_depth
            disp = 1.0 / np.maximum(depth, opts.min_depth)
        if not valid.any():
            raise ModalityError(None, "depth map has no valid pixels")
        if opts.hole_fill == "local":
            disp = fill_from_neighbours(disp, valid)
        else:
            disp = np.where(valid, disp, disp[valid].mean())  # holes carry no signal: the mean hides them
        return fit_plane_residual(disp, valid) if opts.detrend == "plane" else disp

    def perturbations(self) -> dict[str, Perturber]:
        """The raster perturbations, noise and offset keeping holes as holes (``DEPTH_PERTURBATIONS``)."""
        return DEPTH_PERTURBATIONS

    def preview(self, path: Path, size: int) -> Image.Image:
        """Disparity (1/depth, or the file's own disparity) less its dominant plane (a tilted wall or
        table), contrast-stretched, in viridis: what stands out toward the camera bright, so a digit
        shows rather than the tilt of the wall it stands on (``relief_preview``); holes (0 or
        negative depth) grey."""
        arr, _bits = read_raster(path)
        arr = shrink(arr, size)
        valid = np.isfinite(arr) & (arr > 0)
        if ".disparity." in path.name.lower():
            disp = np.where(valid, arr, 0.0)
        else:
            disp = np.where(valid, 1.0 / np.where(valid, arr, 1.0), 0.0)
        return relief_preview(disp, valid, "viridis")


FILL_SIGMAS = (1.0, 2.0, 4.0, 8.0)  # pixels: each hole takes the nearest scale that reaches valid pixels


def fill_from_neighbours(x: np.ndarray, valid: np.ndarray, sigmas: tuple[float, ...] = FILL_SIGMAS) -> np.ndarray:
    """``x`` with each invalid pixel given what the valid pixels around it say: the map's plane
    (least squares on the valid pixels) plus the Gaussian-weighted mean of the valid pixels'
    residuals from it (normalised convolution), at the smallest of ``sigmas`` that reaches one
    (no residual where none does). A hole on a sloped surface thus continues the slope instead
    of taking the side it is filled from. Valid pixels are returned unchanged."""
    x = np.asarray(x, np.float32)
    known = np.where(valid, x, 0.0)  # what is under a hole (NaN, inf, a fill) never reaches the fit
    residual = fit_plane_residual(known, valid)
    plane = known - residual
    values = np.where(valid, residual, 0.0).astype(np.float32)
    weight = valid.astype(np.float32)
    filled = np.zeros_like(values)
    todo = ~valid
    for sigma in sigmas:
        if not todo.any():
            break
        num = cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        den = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        reached = todo & (den > 1e-3)
        filled[reached] = num[reached] / den[reached]
        todo &= ~reached
    return np.where(valid, x, plane + filled).astype(np.float32)
