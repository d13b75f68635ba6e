"""Thermal: a long-wave infrared camera looking at a digit drawn with a warm source on a cooler slab.

Physical model, per digit:

* Temperatures. The ink is a warm source at 30-38 °C (a fingertip or warm water), the background
  18-26 °C. The ink pattern is placed with a random pose (rotation ±20°, scale 0.8-1.1, shift up
  to ±8 % of the frame: an affine warp).
* Heat diffusion. Between drawing and capture (t = 2-30 s) heat spreads through the surface; the
  heat equation's solution for an initial pattern is a Gaussian blur with σ = sqrt(2·D·t), with
  D = 1e-6 m²/s (stone/ceramic) and a 10 cm field of view (pixel = 10 cm / thermal_size).
* Radiance. Emissivity ink 0.90-0.98, background 0.80-0.95 (material, not diffused). The sensor
  sees emitted plus reflected radiance, L = ε·σ·T⁴ + (1 − ε)·σ·T_amb⁴ (Stefan–Boltzmann, T in K,
  reflected ambient 15-25 °C).
* Sensor. Temporal noise with NETD 30-100 mK (converted to radiance with dL/dT = 4·σ·T³) and a
  column fixed-pattern offset (0.5-2 NETD per column, a microbolometer's column amplifiers).
  Radiance maps linearly to 16-bit counts between black bodies at 10 °C (0) and 45 °C (65535).

Output: ``thermal/{index:05d}.thermal.png``, 16-bit, ``thermal_size`` square.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from recipes.world.common import save_png
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_per_digit

STEFAN_BOLTZMANN = 5.670374419e-8  # W m^-2 K^-4
KELVIN = 273.15
DIFFUSIVITY = 1e-6  # m^2/s
FIELD_OF_VIEW_M = 0.10
COUNTS_LOW_C, COUNTS_HIGH_C = 10.0, 45.0


def random_affine(rng: np.random.Generator, size: int, max_rot: float = 20.0, scale=(0.8, 1.1),
                  max_shift: float = 0.08) -> np.ndarray:
    """A 2x3 OpenCV affine: rotation and scale about the centre, then a shift."""
    m = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), rng.uniform(-max_rot, max_rot),
                                rng.uniform(*scale))
    m[:, 2] += rng.uniform(-max_shift, max_shift, 2) * size
    return m


def radiance(temp_k: np.ndarray | float, emissivity: np.ndarray | float, ambient_k: float) -> np.ndarray:
    """Emitted + reflected radiant exitance (W/m²) of a grey body."""
    return emissivity * STEFAN_BOLTZMANN * np.power(temp_k, 4) + (1 - emissivity) * STEFAN_BOLTZMANN * ambient_k ** 4


def render_thermal(ink8: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """16-bit counts of one thermal frame of the digit."""
    ink = cv2.warpAffine(upscale(ink8, size), random_affine(rng, size), (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    ink = np.clip(ink, 0.0, 1.0).astype(np.float64)
    t_ink = rng.uniform(30.0, 38.0) + KELVIN
    t_bg = rng.uniform(18.0, 26.0) + KELVIN
    temp = t_bg + (t_ink - t_bg) * ink
    sigma_px = np.sqrt(2 * DIFFUSIVITY * rng.uniform(2.0, 30.0)) / (FIELD_OF_VIEW_M / size)
    temp = gaussian_filter(temp, sigma_px, mode="nearest")

    eps_ink, eps_bg = rng.uniform(0.90, 0.98), rng.uniform(0.80, 0.95)
    emissivity = eps_bg + (eps_ink - eps_bg) * ink
    ambient = rng.uniform(15.0, 25.0) + KELVIN
    rad = radiance(temp, emissivity, ambient)

    netd = rng.uniform(0.03, 0.10)
    per_kelvin = 4 * STEFAN_BOLTZMANN * t_bg ** 3
    rad = rad + rng.normal(0.0, netd * per_kelvin, rad.shape)
    rad = rad + rng.normal(0.0, rng.uniform(0.5, 2.0) * netd * per_kelvin, (1, size))  # column FPN

    lo = STEFAN_BOLTZMANN * (COUNTS_LOW_C + KELVIN) ** 4
    hi = STEFAN_BOLTZMANN * (COUNTS_HIGH_C + KELVIN) ** 4
    counts = np.round((rad - lo) / (hi - lo) * 65535.0)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def write_thermal(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> dict[str, list[dict]]:
    """One thermal frame per digit, paired with that digit's image."""
    return write_per_digit(folder, cfg, digits, "thermal", "thermal/{:05d}.thermal.png",
                           lambda path, ink, rng: save_png(path, render_thermal(ink, rng, cfg.thermal_size)), progress)
