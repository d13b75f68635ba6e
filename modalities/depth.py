"""Depth maps as disparity images (ImageBind's depth input)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from binder.errors import ConfigError, ModalityError
from binder.registry import register_modality
from modalities.augment.raster import DepthAugment, augment_depth
from modalities.preview import shrink
from modalities.raster import RasterModality, RasterOptions, read_raster, relief_preview


@dataclass(frozen=True)
class DepthOptions(RasterOptions):
    """``kind``: what the file holds ("depth" in metres after scaling, or "disparity").
    ``png_scale``: integer PNG units per metre (1000 = millimetres, the Kinect/RealSense norm).
    ``detrend``: "plane" subtracts the least-squares plane of the disparity, so a small object on
    a tilted wall or table is not drowned by the surface it stands on; "none" keeps it."""

    kind: str = "depth"
    png_scale: float = 1000.0
    min_depth: float = 0.05
    detrend: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in ("depth", "disparity"):
            raise ConfigError(f"depth kind must be 'depth' or 'disparity', got {self.kind!r}")
        if self.detrend not in ("none", "plane"):
            raise ConfigError(f"depth detrend must be 'none' or 'plane', got {self.detrend!r}")


@register_modality
class Depth(RasterModality):
    """Depth → disparity 1/d (invalid pixels filled with the mean), optional plane removal,
    resize + crop, standardized."""

    name = "depth"
    extensions = (".depth.png", ".depth.npy", ".depth.tif", ".depth.tiff", ".disparity.png", ".disparity.npy")
    Options = DepthOptions
    AugmentOptions = DepthAugment

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
        disp = np.where(valid, disp, disp[valid].mean())  # holes carry no signal: the mean hides them
        return fit_plane_residual(disp, valid) if opts.detrend == "plane" else disp

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


def fit_plane_residual(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``x`` minus its least-squares plane a·u + b·v + c, fitted on the valid pixels."""
    v, u = np.nonzero(valid)
    design = np.stack([u, v, np.ones_like(u)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, x[valid].astype(np.float64), rcond=None)
    vv, uu = np.mgrid[0:x.shape[0], 0:x.shape[1]]
    return (x - (coef[0] * uu + coef[1] * vv + coef[2])).astype(np.float32)
