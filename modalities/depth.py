"""Depth maps as disparity images (ImageBind's depth input)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from binder.registry import register_modality
from modalities.raster import RasterModality, RasterOptions


@dataclass(frozen=True)
class DepthOptions(RasterOptions):
    """``kind``: what the file holds ("depth" in metres after scaling, or "disparity").
    ``png_scale``: integer PNG units per metre (1000 = millimetres, the Kinect/RealSense norm)."""

    kind: str = "depth"
    png_scale: float = 1000.0
    min_depth: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in ("depth", "disparity"):
            raise ValueError(f"depth kind must be 'depth' or 'disparity', got {self.kind!r}")


@register_modality
class Depth(RasterModality):
    """Depth → disparity 1/d (0 where invalid), short side resized to image_size, center crop, standardized."""

    name = "depth"
    extensions = (".depth.png", ".depth.npy", ".depth.tif", ".depth.tiff", ".disparity.png", ".disparity.npy")
    Options = DepthOptions

    def to_signal(self, arr: np.ndarray, bits: int) -> np.ndarray:
        opts = self.options
        if opts.kind == "disparity":
            return arr
        depth = arr / opts.png_scale if bits else arr
        valid = depth >= opts.min_depth
        return np.where(valid, 1.0 / np.maximum(depth, opts.min_depth), 0.0)
