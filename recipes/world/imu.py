"""IMU: a wrist-worn accelerometer + gyroscope while the digit is written in the air.

Physical model, per digit:

* Pen path. The ink of the digit (bicubic 24x24, above 40 % of its peak) is thinned to a
  one-pixel skeleton (Zhang–Suen) and ordered into one stroke by a greedy nearest-neighbour tour
  from the top-most stroke end (top-most pixel for closed loops), jumping straight across gaps,
  resampled uniformly by arc length and smoothed (Gaussian moving average), then scaled so the
  digit's larger side is ~0.25 m (±20 %), in a vertical plane in front of the writer
  (world x right, y forward, z up) with a slight forward wobble.
* Timing. The window holds ``imu_length`` samples at ``imu_rate`` Hz (2.5 s at the defaults); the
  writing takes 68-88 % of it (~2 s) after a short rest. Along the stroke the speed follows a
  sin² bell (the hand starts and stops at rest) modulated by a random slow speed variation, so no
  two traces share a timing.
* Orientation. The wrist's base orientation is random (yaw, pitch, roll within ±20°); while writing
  it rolls with the pen's direction of travel (30 % of the low-passed heading change: wrists follow strokes)
  and pitches/yaws a little with the vertical/horizontal velocity, plus 8-12 Hz physiological
  tremor of ~0.3°.
* Sensors. Acceleration is the second time derivative of position; the accelerometer reads the
  specific force a − g rotated into the device frame (so gravity, 9.81 m/s², shows where the
  device points); the gyroscope reads the device-frame angular rate of the orientation
  (rotation vectors of consecutive relative rotations times the rate). Each axis gets white noise
  (acc 0.02-0.05 m/s², gyro 0.003-0.01 rad/s) and a constant bias (±0.1 m/s², ±0.02 rad/s).

Output: ``imu/{index:05d}.imu.npy``, float32 (6, imu_length): acc xyz (m/s²), gyro xyz (rad/s).

Hard split (``imu/hard/{k:05d}.imu.npy``, manifest ``imu.hard.jsonl``): test digits written under
a random non-empty subset of four sensor conditions no train/val/test trace has, recorded in the
row's ``condition`` (e.g. ``gain-0.14+offset-start-212ms``) with their parameters:

* ``noise``: white noise acc 0.10-0.30 m/s², gyro 0.02-0.06 rad/s (training 0.02-0.05 / 0.003-0.01).
* ``gain``: per-axis scale errors of 5-20 % either way and a cross-axis misalignment of up to
  ±3 % (an uncalibrated sensor; training axes are exact).
* ``bias``: per-axis offsets of 0.2-0.6 m/s² and 0.04-0.12 rad/s either way (training ±0.1 / ±0.02).
* ``offset``: a time offset between the recording window and the writing: 8-20 % of the writing
  falls before the window starts or after it ends (training windows always hold the whole
  writing with rest on both sides).

Held out so a binding that learnt the motion of the digit (not the training sensor's noise floor,
calibration and perfectly aligned windows) can be told apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from recipes.world.common import outside, pick_conditions, save_npy
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_hard_per_digit, write_per_digit

GRAVITY = 9.81
STROKE_POINTS = 256


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning of a boolean image to a one-pixel-wide skeleton (vectorized sub-iterations)."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = img
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(x.astype(np.int32) for x in n)  # P2..P9 clockwise from north
            trans = sum(((n[k] == 0) & (n[(k + 1) % 8] == 1)).astype(np.int32) for k in range(8))
            if step == 0:
                cond = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                cond = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            remove = (p[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (trans == 1) & cond
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def stroke(ink8: np.ndarray) -> np.ndarray:
    """(STROKE_POINTS, 2) ordered, smoothed pen positions (x right, y up) in pixels of a 24x24 grid.

    The ink (above 40 % of its peak) is thinned to a skeleton; the tour starts at the top-most
    stroke end (top-most skeleton pixel when the digit is a closed loop) and always moves to the
    nearest unvisited skeleton pixel (a straight pen move across gaps and junctions).
    """
    img = upscale(ink8, 24)
    mask = img > 0.4 * img.max()
    skel = thin(mask)
    if skel.sum() < 2:
        skel = mask
    rows, cols = np.nonzero(skel)
    pts = np.stack([cols, -rows], axis=1).astype(np.float64)  # x right, y up
    dist = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    ends = np.flatnonzero((dist <= 2).sum(1) - 1 == 1)  # skeleton pixels with one 8-neighbour
    cand = ends if len(ends) else np.arange(len(pts))
    start = int(cand[np.lexsort((cols[cand], rows[cand]))[0]])  # top-most, then left-most
    order = [start]
    dist[:, start] = np.inf
    for _ in range(len(pts) - 1):
        nxt = int(np.argmin(dist[order[-1]]))
        order.append(nxt)
        dist[:, nxt] = np.inf
    path = pts[order]
    if len(path) < 2:
        path = np.vstack([path, path + [0.0, -1.0]])
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, arc[-1], STROKE_POINTS)
    path = np.stack([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])], axis=1)
    return gaussian_filter1d(path, sigma=STROKE_POINTS / 64, axis=0, mode="nearest")


def _axis_rotations(axis: int, angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices about one coordinate axis (0 = x, 1 = y, 2 = z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out = np.zeros((len(angle), 3, 3))
    out[:, axis, axis] = 1.0
    out[:, i, i], out[:, i, j], out[:, j, i], out[:, j, j] = c, -s, s, c
    return out


def rotation_log(rel: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors of (N, 3, 3) rotation matrices (angles below π)."""
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    vee = np.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], axis=1)
    scale = np.where(theta < 1e-6, 0.5, theta / (2 * np.sin(np.maximum(theta, 1e-12))))
    return vee * scale[:, None]


def _train_timing(rng: np.random.Generator, length: int) -> tuple[int, int]:
    """Writing takes 68-88 % of the window and lies wholly inside it: (samples, first sample)."""
    n_write = int(round(length * rng.uniform(0.68, 0.88)))
    return n_write, int(rng.integers(0, length - n_write + 1))


def _motion(ink8: np.ndarray, rng: np.random.Generator, length: int, rate: float,
            timing=_train_timing) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free (length, 3) accelerometer and gyroscope readings while writing the digit.

    ``timing(rng, length) -> (n_write, start)`` places the writing in the window; ``start`` may be
    negative or ``start + n_write`` beyond the window (the window then cuts the writing off).
    """
    path = stroke(ink8)
    extent = np.ptp(path, axis=0).max()
    path = (path - path.mean(0)) * (0.25 * rng.uniform(0.8, 1.2) / max(extent, 1e-6))

    dt = 1.0 / rate
    n_write, start = timing(rng, length)
    tau = np.linspace(0.0, 1.0, n_write)
    speed = np.sin(np.pi * tau) ** 2 * (1 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * tau
                                                          + rng.uniform(0, 2 * np.pi)))
    progress = np.concatenate([[0.0], np.cumsum(speed[1:] + speed[:-1])])
    progress /= progress[-1]
    if 0 <= start and start + n_write <= length:
        u = np.concatenate([np.zeros(start), progress, np.ones(length - start - n_write)])
    else:  # the window cuts the writing: sample i sees progress[i - start], clamped to rest before/after
        u = progress[np.clip(np.arange(length) - start, 0, n_write - 1)]
    grid = np.linspace(0.0, 1.0, len(path))
    x = np.interp(u, grid, path[:, 0])
    z = np.interp(u, grid, path[:, 1])
    t = np.arange(length) * dt
    y = 0.01 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi))
    pos = gaussian_filter1d(np.stack([x, y, z], axis=1), sigma=0.01 * rate, axis=0, mode="nearest")

    vel = np.gradient(pos, dt, axis=0)
    acc = np.gradient(vel, dt, axis=0)

    # the wrist rolls with the direction of travel, pitches/yaws with the velocity
    # (smoothed twice, so a cusp, where the direction flips, turns the wrist over ~0.1 s, not instantly)
    c = gaussian_filter1d(vel[:, 0] + 1j * vel[:, 2], sigma=0.03 * rate, mode="nearest")
    heading = gaussian_filter1d(np.unwrap(np.angle(c + 0.02)), sigma=0.04 * rate, mode="nearest")
    heading -= heading.mean()
    vmax = max(np.abs(vel).max(), 1e-6)
    base = np.deg2rad(rng.uniform(-20, 20, 3))
    tremor_f = rng.uniform(8, 12)
    tremor = np.deg2rad(0.3) * np.sin(2 * np.pi * tremor_f * t[:, None] + rng.uniform(0, 2 * np.pi, 3))
    yaw = base[0] + 0.2 * vel[:, 0] / vmax + tremor[:, 0]
    pitch = base[1] + 0.3 * vel[:, 2] / vmax + tremor[:, 1]
    roll = base[2] + 0.3 * heading + tremor[:, 2]
    # device -> world: intrinsic z (yaw), then x (pitch), then y (roll: about the forward axis)
    orient = _axis_rotations(2, yaw) @ _axis_rotations(0, pitch) @ _axis_rotations(1, roll)

    specific_force = acc + np.array([0.0, 0.0, GRAVITY])
    acc_dev = np.einsum("nji,nj->ni", orient, specific_force)  # Rᵀ f
    rel = np.einsum("nji,njk->nik", orient[:-1], orient[1:])  # R_kᵀ R_k+1, in the device frame at k
    gyro = rotation_log(rel) * rate
    gyro = np.vstack([gyro, gyro[-1:]])
    return acc_dev, gyro


def air_writing(ink8: np.ndarray, rng: np.random.Generator, length: int, rate: float) -> np.ndarray:
    """float32 (6, length): accelerometer (m/s², device frame) and gyroscope (rad/s) while writing the digit."""
    acc_dev, gyro = _motion(ink8, rng, length, rate)
    acc_dev += rng.normal(0, rng.uniform(0.02, 0.05), acc_dev.shape) + rng.uniform(-0.1, 0.1, 3)
    gyro += rng.normal(0, rng.uniform(0.003, 0.01), gyro.shape) + rng.uniform(-0.02, 0.02, 3)
    return np.concatenate([acc_dev, gyro], axis=1).T.astype(np.float32)


def write_imu(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> dict[str, list[dict]]:
    """One air-writing trace per digit, paired with that digit's image."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> None:
        save_npy(path, air_writing(ink, rng, cfg.imu_length, cfg.imu_rate))

    return write_per_digit(folder, cfg, digits, "imu", "imu/{:05d}.imu.npy", write, progress, "imu (air-writing)")


HARD_CONDITIONS = ("noise", "gain", "bias", "offset")


def air_writing_hard(ink8: np.ndarray, rng: np.random.Generator, length: int,
                     rate: float) -> tuple[np.ndarray, dict]:
    """float32 (6, length) hard-split trace and its descriptive fields (see the module docstring)."""
    on = pick_conditions(rng, HARD_CONDITIONS)
    labels, fields = [], {}

    def timing(rng: np.random.Generator, length: int) -> tuple[int, int]:
        n_write, start = _train_timing(rng, length)
        if "offset" not in on:
            return n_write, start
        cut = int(round(rng.uniform(0.08, 0.20) * n_write))  # this much of the writing falls outside the window
        start = -cut if rng.random() < 0.5 else length - n_write + cut
        fields["time_offset_s"] = round(start / rate if start < 0 else (start + n_write - length) / rate, 4)
        fields["cut"] = "start" if start < 0 else "end"
        labels.append(f"offset-{fields['cut']}-{1000 * cut / rate:.0f}ms")
        return n_write, start

    acc, gyro = _motion(ink8, rng, length, rate, timing)
    if "gain" in on:  # per-axis scale errors and a small cross-axis misalignment
        scale_acc = 1 + np.array([outside(rng, 0.05, 0.20) for _ in range(3)])
        scale_gyro = 1 + np.array([outside(rng, 0.05, 0.20) for _ in range(3)])
        mis_acc = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)) * (1 - np.eye(3))
        mis_gyro = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)) * (1 - np.eye(3))
        acc = acc @ (np.diag(scale_acc) @ mis_acc).T
        gyro = gyro @ (np.diag(scale_gyro) @ mis_gyro).T
        labels.append(f"gain-{np.abs(np.concatenate([scale_acc, scale_gyro]) - 1).max():.2f}")
        fields.update(acc_scale=np.round(scale_acc, 4).tolist(), gyro_scale=np.round(scale_gyro, 4).tolist())
    if "noise" in on:
        acc_sigma, gyro_sigma = rng.uniform(0.10, 0.30), rng.uniform(0.02, 0.06)
        labels.append(f"noise-{acc_sigma:.2f}")
    else:
        acc_sigma, gyro_sigma = rng.uniform(0.02, 0.05), rng.uniform(0.003, 0.01)
    if "bias" in on:
        acc_bias = np.array([outside(rng, 0.2, 0.6) for _ in range(3)])
        gyro_bias = np.array([outside(rng, 0.04, 0.12) for _ in range(3)])
        labels.append(f"bias-{np.abs(acc_bias).max():.2f}")
    else:
        acc_bias, gyro_bias = rng.uniform(-0.1, 0.1, 3), rng.uniform(-0.02, 0.02, 3)
    acc = acc + rng.normal(0, acc_sigma, acc.shape) + acc_bias
    gyro = gyro + rng.normal(0, gyro_sigma, gyro.shape) + gyro_bias
    fields.update(acc_noise=round(float(acc_sigma), 4), gyro_noise=round(float(gyro_sigma), 4),
                  acc_bias=np.round(acc_bias, 4).tolist(), gyro_bias=np.round(gyro_bias, 4).tolist())
    order = [c for c in HARD_CONDITIONS if c in on]  # labels in the fixed condition order
    by_name = {label.split("-")[0]: label for label in labels}
    return (np.concatenate([acc, gyro], axis=1).T.astype(np.float32),
            {"condition": "+".join(by_name[c] for c in order), **fields})


def write_imu_hard(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> list[dict]:
    """The hard split: ``imu/hard/{k:05d}.imu.npy`` of test digits under held-out sensor conditions."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> dict:
        trace, fields = air_writing_hard(ink, rng, cfg.imu_length, cfg.imu_rate)
        save_npy(path, trace)
        return fields

    return write_hard_per_digit(folder, cfg, digits, "imu", "imu", "imu/hard/{:05d}.imu.npy", write, progress,
                                "imu (air-writing, hard)")
