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

Hard split (``thermal/hard/{k:05d}.thermal.png``, manifest ``thermal.hard.jsonl``): test digits
under a random non-empty subset of four conditions no train/val/test frame has, recorded in the
row's ``condition`` (e.g. ``ambient-hot+blur-63s-defocus1.2px``) with their parameters:

* ``ambient``: another scene temperature: a hot room (background 28-32 °C, reflected ambient
  30-40 °C, ink only 2-6 °C warmer) or a cold one (background 11-15 °C, reflected 2-10 °C, ink
  30-38 °C; the coldest pixels may clip at 0 counts), outside the training 18-26 °C background /
  15-25 °C ambient.
* ``gain``: an uncalibrated camera: counts = gain · counts + offset with gain 0.55-0.8 or
  1.25-1.6 and offset ±(3,000-10,000) counts (training frames share one exact radiometric map).
* ``blur``: heat spread for 40-90 s (training 2-30 s: σ up to 2.5 px at 32 px, here 2.9-4.3 px)
  plus optical defocus (Gaussian σ 0.8-1.8 px, training frames are in focus).
* ``noise``: NETD 0.2-0.5 K (training 30-100 mK), column fixed-pattern 2-5 NETD and row
  fixed-pattern 1-3 NETD (training: columns only, 0.5-2 NETD).

Held out so a binding that learnt "a warm digit-shaped pattern" rather than the training
camera's exact temperatures, calibration, sharpness and noise can be told apart.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from recipes.world.common import outside, pick_conditions, save_png
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_hard_per_digit, write_per_digit

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


HARD_CONDITIONS = ("ambient", "gain", "blur", "noise")


def render_thermal_hard(ink8: np.ndarray, rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """16-bit counts of one hard-split thermal frame and its descriptive fields (see the module docstring)."""
    on = pick_conditions(rng, HARD_CONDITIONS)
    ink = cv2.warpAffine(upscale(ink8, size), random_affine(rng, size), (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    ink = np.clip(ink, 0.0, 1.0).astype(np.float64)
    labels, fields = [], {}
    if "ambient" in on:
        if rng.random() < 0.5:
            room = "hot"
            t_bg_c = rng.uniform(28.0, 32.0)
            t_ink_c = t_bg_c + rng.uniform(2.0, 6.0)
            ambient_c = rng.uniform(30.0, 40.0)
        else:
            room = "cold"
            t_bg_c = rng.uniform(11.0, 15.0)
            t_ink_c = rng.uniform(30.0, 38.0)
            ambient_c = rng.uniform(2.0, 10.0)
        labels.append(f"ambient-{room}")
    else:
        t_ink_c, t_bg_c, ambient_c = rng.uniform(30.0, 38.0), rng.uniform(18.0, 26.0), rng.uniform(15.0, 25.0)
    fields.update(ink_c=round(float(t_ink_c), 2), background_c=round(float(t_bg_c), 2),
                  ambient_c=round(float(ambient_c), 2))
    t_ink, t_bg = t_ink_c + KELVIN, t_bg_c + KELVIN
    temp = t_bg + (t_ink - t_bg) * ink
    seconds = rng.uniform(40.0, 90.0) if "blur" in on else rng.uniform(2.0, 30.0)
    temp = gaussian_filter(temp, np.sqrt(2 * DIFFUSIVITY * seconds) / (FIELD_OF_VIEW_M / size), mode="nearest")

    eps_ink, eps_bg = rng.uniform(0.90, 0.98), rng.uniform(0.80, 0.95)
    emissivity = eps_bg + (eps_ink - eps_bg) * ink
    rad = radiance(temp, emissivity, ambient_c + KELVIN)
    if "blur" in on:  # defocused optics blur radiance, not temperature
        defocus = rng.uniform(0.8, 1.8)
        rad = gaussian_filter(rad, defocus, mode="nearest")
        labels.append(f"blur-{seconds:.0f}s-defocus{defocus:.1f}px")
        fields.update(diffusion_s=round(float(seconds), 1), defocus_px=round(float(defocus), 2))

    per_kelvin = 4 * STEFAN_BOLTZMANN * t_bg ** 3
    if "noise" in on:
        netd = rng.uniform(0.2, 0.5)
        rad = rad + rng.normal(0.0, netd * per_kelvin, rad.shape)
        rad = rad + rng.normal(0.0, rng.uniform(2.0, 5.0) * netd * per_kelvin, (1, size))  # column FPN
        rad = rad + rng.normal(0.0, rng.uniform(1.0, 3.0) * netd * per_kelvin, (size, 1))  # row FPN
        labels.append(f"noise-{1000 * netd:.0f}mK")
    else:
        netd = rng.uniform(0.03, 0.10)
        rad = rad + rng.normal(0.0, netd * per_kelvin, rad.shape)
        rad = rad + rng.normal(0.0, rng.uniform(0.5, 2.0) * netd * per_kelvin, (1, size))
    fields["netd_k"] = round(float(netd), 3)

    lo = STEFAN_BOLTZMANN * (COUNTS_LOW_C + KELVIN) ** 4
    hi = STEFAN_BOLTZMANN * (COUNTS_HIGH_C + KELVIN) ** 4
    counts = (rad - lo) / (hi - lo) * 65535.0
    if "gain" in on:
        gain = rng.uniform(0.55, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.6)
        offset = outside(rng, 3000.0, 10000.0)
        counts = gain * counts + offset
        labels.append(f"gain-{gain:.2f}-offset{offset:+.0f}")
        fields.update(gain=round(float(gain), 3), offset_counts=round(float(offset), 1))
    out = np.clip(np.round(counts), 0, 65535).astype(np.uint16)
    return out, {"condition": "+".join(labels), **fields}


def write_thermal_hard(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> list[dict]:
    """The hard split: ``thermal/hard/{k:05d}.thermal.png`` of test digits under held-out conditions."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> dict:
        counts, fields = render_thermal_hard(ink, rng, cfg.thermal_size)
        save_png(path, counts)
        return fields

    return write_hard_per_digit(folder, cfg, digits, "thermal", "thermal", "thermal/hard/{:05d}.thermal.png", write,
                                progress)
