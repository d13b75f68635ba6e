"""Thermal (long-wave infrared) frames as single-channel intensity rasters."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from binder.errors import ConfigError
from binder.registry import register_modality
from modalities.augment.raster import ThermalAugment, augment_thermal
from modalities.preview import shrink
from modalities.raster import RasterModality, RasterOptions, fit_plane_residual, read_raster, relief_preview


@dataclass(frozen=True)
class ThermalOptions(RasterOptions):
    """``detrend``: "plane" subtracts the frame's least-squares plane before standardizing, so a
    slab warmer at one end, a heater's gradient or vignetting across the lens is not read as the
    scene; "none" (the default, what saved bindings were trained with) keeps it."""

    detrend: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.detrend not in ("none", "plane"):
            raise ConfigError(f"thermal detrend must be 'none' or 'plane', got {self.detrend!r}")


@register_modality
class Thermal(RasterModality):
    """Radiometric or 8/16-bit thermal frame, short side resized to image_size, center crop, standardized."""

    name = "thermal"
    extensions = (".thermal.png", ".thermal.npy", ".thermal.tif", ".thermal.tiff", ".ir.png")
    Options = ThermalOptions
    AugmentOptions = ThermalAugment

    def augment(self, raw: tuple[np.ndarray, int], rng: np.random.Generator,
                options: ThermalAugment) -> tuple[np.ndarray, int]:
        """Resized crop, rotation, translation, sensor noise, gain and offset (modalities.augment.raster)."""
        return augment_thermal(raw, rng, options)

    def to_signal(self, arr: np.ndarray, bits: int) -> np.ndarray:
        """Counts scaled to [0, 1] (float data as it is), less its plane with ``detrend = "plane"``."""
        signal = arr / float(2**bits - 1) if bits else arr
        if self.options.detrend == "plane":
            return fit_plane_residual(np.asarray(signal, np.float64), np.isfinite(signal))
        return signal

    def preview(self, path: Path, size: int) -> Image.Image:
        """Intensity (raw counts or temperature) less its dominant plane (a slab warmer at one end,
        vignetting), stretched between the 1st and 99th percentiles of what is left, in inferno:
        what is warmer than its surroundings bright (``relief_preview``)."""
        arr = shrink(read_raster(path)[0], size)
        return relief_preview(arr, np.isfinite(arr), "inferno")
