"""Thermal (long-wave infrared) frames as single-channel intensity rasters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from binder.registry import register_modality
from modalities.augment.raster import ThermalAugment, augment_thermal
from modalities.preview import shrink
from modalities.raster import RasterModality, read_raster, relief_preview


@register_modality
class Thermal(RasterModality):
    """Radiometric or 8/16-bit thermal frame, short side resized to image_size, center crop, standardized."""

    name = "thermal"
    extensions = (".thermal.png", ".thermal.npy", ".thermal.tif", ".thermal.tiff", ".ir.png")
    AugmentOptions = ThermalAugment

    def augment(self, raw: tuple[np.ndarray, int], rng: np.random.Generator,
                options: ThermalAugment) -> tuple[np.ndarray, int]:
        """Resized crop, rotation, translation, sensor noise, gain and offset (modalities.augment.raster)."""
        return augment_thermal(raw, rng, options)

    def to_signal(self, arr: np.ndarray, bits: int) -> np.ndarray:
        return arr / float(2**bits - 1) if bits else arr

    def preview(self, path: Path, size: int) -> Image.Image:
        """Intensity (raw counts or temperature) less its dominant plane (a slab warmer at one end,
        vignetting), stretched between the 1st and 99th percentiles of what is left, in inferno:
        what is warmer than its surroundings bright (``relief_preview``)."""
        arr = shrink(read_raster(path)[0], size)
        return relief_preview(arr, np.isfinite(arr), "inferno")
