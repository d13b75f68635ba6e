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
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from recipes.world.common import save_png
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_per_digit

RELIEF_M = 0.015
TEXTURE = 64
FOV_DEG = 58.0
KINECT_F_PX = 580.0
KINECT_BASELINE_M = 0.075
DISPARITY_STEP_PX = 1.0 / 8.0


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_x @ r_y @ r_z


def render_depth(ink8: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Depth in millimetres (uint16, 0 = invalid) of one digit relief seen by the simulated sensor."""
    height = RELIEF_M * np.clip(gaussian_filter(upscale(ink8, TEXTURE), 1.0), 0.0, 1.0)

    tan_half = np.tan(np.deg2rad(FOV_DEG) / 2)
    f = size / 2 / tan_half
    z0 = rng.uniform(0.4, 1.2)
    half = z0 * tan_half * rng.uniform(0.55, 0.80)  # half-width of the digit's square on the plane (m)
    rot = _rotation(*np.deg2rad([rng.uniform(-25, 25), rng.uniform(-25, 25), rng.uniform(-20, 20)]))
    t = np.array([rng.uniform(-0.06, 0.06) * z0, rng.uniform(-0.06, 0.06) * z0, z0])
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
    z = (n_t - h) / n_d

    fb = KINECT_F_PX * KINECT_BASELINE_M
    disparity = fb / z + rng.normal(0.0, rng.uniform(0.05, 0.10), z.shape)
    disparity = np.round(disparity / DISPARITY_STEP_PX) * DISPARITY_STEP_PX
    depth_mm = np.round(1000.0 * fb / disparity)

    invalid = rng.random(z.shape) < rng.uniform(0.003, 0.01)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, 4))):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.0, 2.0)
        invalid |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    depth_mm[invalid] = 0
    return np.clip(depth_mm, 0, 65535).astype(np.uint16)


def write_depth(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> dict[str, list[dict]]:
    """One depth map per digit, paired with that digit's image."""
    return write_per_digit(folder, cfg, digits, "depth", "depth/{:05d}.depth.png",
                           lambda path, ink, rng: save_png(path, render_depth(ink, rng, cfg.depth_size)), progress)
