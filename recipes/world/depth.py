"""Depth: a structured-light (Kinect-like) depth camera looking at the digit embossed on a wall.

Physical model, per digit:

* Surface. The digit's ink (bicubic 64x64 texture, small Gaussian blur) is a relief of up to
  ``RELIEF_M`` = 15 mm standing out of an infinite plane toward the camera. The digit's square
  covers a random 55-80 % of the field of view at the plane's distance (the camera frames it).
* Pose. The plane sits 0.4-1.2 m away, tilted by up to ±25° about the camera's x and y axes,
  rotated in-plane by up to ±20°, and shifted sideways by up to 6 % of the distance.
* Rendering. A pinhole camera with a 58° horizontal field of view (Kinect v1), one ray per pixel
  centre. Each ray meets the base plane at depth λ = n·t / n·d (the inverse homography of the
  plane gives the point's (u, v) on the digit); the relief height h(u, v) moves the surface by h
  toward the camera, so λ = (n·t − h) / n·d; two fixed-point iterations re-sample h at the moved
  intersection (ray–surface intersection for a gently sloped relief).
* Sensor. Structured light measures disparity d = f·b / z (f = 580 px, baseline b = 7.5 cm).
  Gaussian disparity noise (σ_d = 0.05-0.10 px) and quantization to 1/8 px give depth noise that
  grows as z² (σ_z = z²·σ_d / (f·b), Khoshelham & Elberink 2012), then depth is stored in whole
  millimetres. Invalid pixels are 0: random dropouts (0.3-1 %) and 0-3 small holes (radius 1-2 px).

Output: ``depth/{index:05d}.depth.png``, 16-bit, millimetres, ``depth_size`` square; it shares the
digit's class but not its pixels (perspective, pose, scale, noise, quantization and holes).

Hard split (``depth/hard/{k:05d}.depth.png``, manifest ``depth.hard.jsonl``): test digits seen
under a random non-empty subset of four conditions that no train/val/test map has, recorded in
the row's ``condition`` (e.g. ``tilt-38deg+holes-9pct``) with its parameters:

* ``tilt``: the wall tilted beyond the training ±25°: one axis 30-45° (either sign), the other
  within the training ±25° (stronger foreshortening and depth gradient across the digit; points
  beyond the sensor's 4 m range read 0).
* ``noise``: disparity noise σ_d = 0.20-0.45 px (training 0.05-0.10), i.e. 2-9x the depth noise.
* ``holes``: 3-10 % dropped pixels plus 4-9 holes of radius 2-4 px (training: 0.3-1 % and 0-3
  holes of 1-2 px), all 0 like the sensor's invalid pixels.
* ``shift``: depth/colour misregistration: the map moves 1-4 px in x and y, the uncovered border
  is invalid (0); training maps are always registered.

Held out because a binding that learnt the digit's relief (not the training sensor's exact noise,
pose range and registration) should still read these.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from recipes.world.common import outside, pick_conditions, save_png
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_hard_per_digit, write_per_digit

RELIEF_M = 0.015
TEXTURE = 64
FOV_DEG = 58.0
KINECT_F_PX = 580.0
KINECT_BASELINE_M = 0.075
DISPARITY_STEP_PX = 1.0 / 8.0
MAX_RANGE_MM = 4000  # hard split: farther points (a steep wall's far side) read invalid, as on a Kinect


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_x @ r_y @ r_z


def _surface_depth(height: np.ndarray, size: int, z0: float, half: float, rot: np.ndarray,
                   t: np.ndarray) -> np.ndarray:
    """Depth (m) along each pixel's ray to the relief ``height`` on the posed plane (no sensor yet)."""
    tan_half = np.tan(np.deg2rad(FOV_DEG) / 2)
    f = size / 2 / tan_half
    n = rot[:, 2]  # plane normal (points away from the camera)
    coords = (np.arange(size) + 0.5 - size / 2) / f
    xn, yn = np.meshgrid(coords, coords)  # rows = y (down), cols = x (right)
    rays = np.stack([xn, yn, np.ones_like(xn)], axis=-1)  # (S, S, 3), d_z = 1 so λ is the depth
    n_d = rays @ n
    n_t = float(n @ t)
    h = np.zeros_like(xn)
    for _ in range(3):  # λ from the current height guess, then re-sample h at the new (u, v)
        lam = (n_t - h) / n_d
        local = (rays * lam[..., None] - t) @ rot  # rotᵀ (X − t): plane coordinates (u, v, w)
        col = (local[..., 0] / half + 1) / 2 * (TEXTURE - 1)
        row = (local[..., 1] / half + 1) / 2 * (TEXTURE - 1)
        h = map_coordinates(height, [row, col], order=1, mode="constant", cval=0.0)
    return (n_t - h) / n_d


def _relief(ink8: np.ndarray) -> np.ndarray:
    return RELIEF_M * np.clip(gaussian_filter(upscale(ink8, TEXTURE), 1.0), 0.0, 1.0)


def _sensor(z: np.ndarray, rng: np.random.Generator, sigma_d: tuple[float, float], dropout: tuple[float, float],
            holes: tuple[int, int], radius: tuple[float, float]) -> np.ndarray:
    """Disparity noise, 1/8 px quantization, whole millimetres, dropouts and round holes (0 = invalid)."""
    size = z.shape[0]
    fb = KINECT_F_PX * KINECT_BASELINE_M
    disparity = fb / z + rng.normal(0.0, rng.uniform(*sigma_d), z.shape)
    disparity = np.round(disparity / DISPARITY_STEP_PX) * DISPARITY_STEP_PX
    depth_mm = np.round(1000.0 * fb / disparity)

    invalid = rng.random(z.shape) < rng.uniform(*dropout)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(*holes))):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(*radius)
        invalid |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    depth_mm[invalid] = 0
    return np.clip(depth_mm, 0, 65535).astype(np.uint16)


def render_depth(ink8: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Depth in millimetres (uint16, 0 = invalid) of one digit relief seen by the simulated sensor."""
    height = _relief(ink8)
    tan_half = np.tan(np.deg2rad(FOV_DEG) / 2)
    z0 = rng.uniform(0.4, 1.2)
    half = z0 * tan_half * rng.uniform(0.55, 0.80)  # half-width of the digit's square on the plane (m)
    rot = _rotation(*np.deg2rad([rng.uniform(-25, 25), rng.uniform(-25, 25), rng.uniform(-20, 20)]))
    t = np.array([rng.uniform(-0.06, 0.06) * z0, rng.uniform(-0.06, 0.06) * z0, z0])
    z = _surface_depth(height, size, z0, half, rot, t)
    return _sensor(z, rng, (0.05, 0.10), (0.003, 0.01), (0, 4), (1.0, 2.0))


HARD_CONDITIONS = ("tilt", "noise", "holes", "shift")


def render_depth_hard(ink8: np.ndarray, rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """One hard-split depth map (uint16 mm) and its descriptive fields (see the module docstring)."""
    on = pick_conditions(rng, HARD_CONDITIONS)
    height = _relief(ink8)
    tan_half = np.tan(np.deg2rad(FOV_DEG) / 2)
    z0 = rng.uniform(0.4, 1.2)
    half = z0 * tan_half * rng.uniform(0.55, 0.80)
    if "tilt" in on:  # one axis beyond the training ±25°, the other anywhere up to ±45°
        steep, other = outside(rng, 30.0, 45.0), rng.uniform(-25.0, 25.0)
        tilt_x, tilt_y = (steep, other) if rng.random() < 0.5 else (other, steep)
    else:
        tilt_x, tilt_y = rng.uniform(-25, 25), rng.uniform(-25, 25)
    rot = _rotation(*np.deg2rad([tilt_x, tilt_y, rng.uniform(-20, 20)]))
    t = np.array([rng.uniform(-0.06, 0.06) * z0, rng.uniform(-0.06, 0.06) * z0, z0])
    z = _surface_depth(height, size, z0, half, rot, t)
    if "noise" in on:
        sigma_d = rng.uniform(0.20, 0.45)
        depth = _sensor(z, rng, (sigma_d, sigma_d), (0.003, 0.01), (0, 4), (1.0, 2.0))
    else:
        sigma_d = None
        depth = _sensor(z, rng, (0.05, 0.10), (0.003, 0.01), (0, 4), (1.0, 2.0))
    depth[depth > MAX_RANGE_MM] = 0  # a grazing wall runs out of the sensor's range
    fields: dict = {"tilt_deg": [round(float(tilt_x), 2), round(float(tilt_y), 2)]}
    labels = []
    if "tilt" in on:
        labels.append(f"tilt-{max(abs(tilt_x), abs(tilt_y)):.0f}deg")
    if sigma_d is not None:
        labels.append(f"noise-{sigma_d:.2f}px")
        fields["disparity_sigma_px"] = round(float(sigma_d), 3)
    if "holes" in on:  # a reflective/absorbing patch and many dropouts: 3-10 % single pixels + 4-9 blobs
        missing = rng.random(depth.shape) < rng.uniform(0.03, 0.10)
        yy, xx = np.mgrid[0:size, 0:size]
        for _ in range(int(rng.integers(4, 10))):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2.0, 4.0)
            missing |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        depth[missing] = 0
        labels.append(f"holes-{100 * (depth == 0).mean():.0f}pct")
    if "shift" in on:  # depth/colour misregistration: the map moves 1-4 px, the border it leaves is invalid
        dy, dx = (int(rng.integers(1, 5)) * int(rng.choice((-1, 1))) for _ in range(2))
        shifted = np.zeros_like(depth)
        src = depth[max(0, -dy):size - max(0, dy), max(0, -dx):size - max(0, dx)]
        shifted[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        depth = shifted
        labels.append(f"shift-dx{dx:+d}-dy{dy:+d}")
        fields["shift_px"] = [dx, dy]
    fields["missing_fraction"] = round(float((depth == 0).mean()), 4)
    return depth, {"condition": "+".join(labels), **fields}


def write_depth(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> dict[str, list[dict]]:
    """One depth map per digit, paired with that digit's image."""
    return write_per_digit(folder, cfg, digits, "depth", "depth/{:05d}.depth.png",
                           lambda path, ink, rng: save_png(path, render_depth(ink, rng, cfg.depth_size)), progress)


def write_depth_hard(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> list[dict]:
    """The hard split: ``depth/hard/{k:05d}.depth.png`` of test digits under held-out conditions."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> dict:
        depth, fields = render_depth_hard(ink, rng, cfg.depth_size)
        save_png(path, depth)
        return fields

    return write_hard_per_digit(folder, cfg, digits, "depth", "depth", "depth/hard/{:05d}.depth.png", write, progress)
