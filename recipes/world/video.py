"""Video: the digit moving across a dark canvas, encoded as MPEG-4 Part 2.

Per digit: the glyph (bicubic, scaled to 55-65 % of the ``video_size`` canvas) travels along a
quadratic Bézier path: a random start and end (at least a third of the free range apart) and a
control point pushed sideways by up to 30 % of the travel (slight curvature). Start, end and
control point lie inside the box of positions that keep the glyph fully in frame, so the whole
path does (a Bézier curve stays in the convex hull of its points). Positions are sub-pixel
(bilinear warp); the ink has a random brightness (0.75-1.0) and a faint colour tint, the
background a random dark level, plus a little sensor noise.

``video_frames`` frames at ``video_fps`` (16 at 8 fps: 2 s clips, twice the T = 8 frames the
recipes embed, so training that decodes 2T frames has real frames to jitter and re-time among) are
encoded with PyAV (codec ``mpeg4``, yuv420p, even sizes, qscale 2) into ``video/{index:05d}.mp4``.
The ``video`` and ``two_stream`` manifests point at the same files (the two-stream modality
computes its optical flow itself).

Hard split (``video/hard/{k:05d}.mp4``, manifests ``video.hard.jsonl`` and ``two_stream.hard.jsonl``,
the same files): test digits under a random non-empty subset of three conditions no train/val/test
clip has, recorded in the row's ``condition`` (e.g. ``motion-spin+noise-0.06``):

* ``motion``: one of four motions outside the training Bézier glide (a displacement of at least a
  third of the free range, glyph always fully in frame, fixed size and angle):
  ``slow`` (nearly static: at most 1/8 of the free range, plus a ±0.5 px hand jitter),
  ``fast`` (a straight pass of 0.8-1.1 frame widths through the centre in any direction, so the
  glyph enters and leaves the frame), ``spin`` (in-place rotation of 90-270° either way with a
  small drift) and ``zoom`` (the glyph grows from 0.30-0.45 to 0.75-0.90 of the canvas or
  shrinks, training scale 0.55-0.65).
* ``noise``: Gaussian sensor noise σ 0.04-0.10 per pixel (training 0.01).
* ``brightness``: an exposure change over the clip (a ramp between gains 0.35-1.4 at least 0.4
  apart, or per-frame flicker 0.5-1.3) on a brighter background (0.15-0.35, training 0-0.12).

Held out so a binding that recognises the digit's shape, not the training clips' motion
statistics, exposure and noise, still reads them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from binder.io import atomic_path
from recipes.world.common import outside, pick_conditions
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_hard_per_digit, write_per_digit


def glyph_path(rng: np.random.Generator, free: float, frames: int) -> np.ndarray:
    """(frames, 2) top-left positions (x, y) in [0, free]² along a random quadratic Bézier curve."""
    a = rng.uniform(0, free, 2)
    for _ in range(100):
        b = rng.uniform(0, free, 2)
        if np.linalg.norm(b - a) >= free / 3:
            break
    d = b - a
    normal = np.array([-d[1], d[0]])
    c = np.clip((a + b) / 2 + rng.uniform(-0.3, 0.3) * normal, 0, free)
    tau = np.linspace(0.0, 1.0, frames)[:, None]
    return (1 - tau) ** 2 * a + 2 * tau * (1 - tau) * c + tau ** 2 * b


def render_clip(ink8: np.ndarray, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """uint8 (frames, size, size, 3) RGB clip of the moving digit."""
    src = upscale(ink8, size)
    scale = rng.uniform(0.55, 0.65)
    free = size * (1 - scale)
    positions = glyph_path(rng, free, frames)
    ink_rgb = rng.uniform(0.75, 1.0) * rng.uniform(0.85, 1.0, 3)
    background = rng.uniform(0.0, 0.12)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k, (x, y) in enumerate(positions):
        m = np.array([[scale, 0.0, x], [0.0, scale, y]])
        glyph = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0.0)
        rgb = background + (ink_rgb - background) * np.clip(glyph, 0, 1)[..., None]
        rgb = rgb + rng.normal(0.0, 0.01, rgb.shape)
        out[k] = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return out


HARD_CONDITIONS = ("motion", "noise", "brightness")
HARD_MOTIONS = ("slow", "fast", "spin", "zoom")


def render_clip_hard(ink8: np.ndarray, rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, dict]:
    """uint8 (frames, size, size, 3) hard-split clip and its descriptive fields (see the module docstring)."""
    on = pick_conditions(rng, HARD_CONDITIONS)
    src = upscale(ink8, size)
    c_src = np.array([size / 2 - 0.5, size / 2 - 0.5])
    tau = np.linspace(0.0, 1.0, frames)
    centre = np.full(2, size / 2 - 0.5)
    labels, fields = [], {}
    if "motion" in on:
        kind = HARD_MOTIONS[int(rng.integers(len(HARD_MOTIONS)))]
        scale = np.full(frames, rng.uniform(0.55, 0.65))
        angle = np.zeros(frames)
        free = size * (1 - scale[0])
        if kind == "slow":
            a = rng.uniform(0, free, 2)
            drift, theta = rng.uniform(0, free / 8), rng.uniform(0, 2 * np.pi)
            b = np.clip(a + drift * np.array([np.cos(theta), np.sin(theta)]), 0, free)
            top_left = a + tau[:, None] * (b - a) + rng.uniform(-0.5, 0.5, (frames, 2))
            pos = top_left + scale[:, None] * c_src  # glyph centre on the canvas
        elif kind == "fast":
            theta = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.cos(theta), np.sin(theta)])
            travel = rng.uniform(0.8, 1.1) * size
            side = rng.uniform(-0.15, 0.15) * free * np.array([-direction[1], direction[0]])
            pos = centre + side + (tau[:, None] - 0.5) * travel * direction
        elif kind == "spin":
            angle = tau * outside(rng, 90.0, 270.0) + rng.uniform(-180, 180)
            start = centre + rng.uniform(-free / 4, free / 4, 2)
            pos = start + tau[:, None] * rng.uniform(-free / 4, free / 4, 2)
        else:  # zoom
            small, large = rng.uniform(0.30, 0.45), rng.uniform(0.75, 0.90)
            s0, s1 = (small, large) if rng.random() < 0.5 else (large, small)
            scale = s0 + (s1 - s0) * tau
            pos = centre + rng.uniform(-2.0, 2.0, 2) + tau[:, None] * rng.uniform(-2.0, 2.0, 2)
        labels.append(f"motion-{kind}")
        fields["motion"] = kind
    else:  # the training glide
        scale = np.full(frames, rng.uniform(0.55, 0.65))
        angle = np.zeros(frames)
        pos = glyph_path(rng, size * (1 - scale[0]), frames) + scale[:, None] * c_src
    ink_rgb = rng.uniform(0.75, 1.0) * rng.uniform(0.85, 1.0, 3)
    if "brightness" in on:
        background = rng.uniform(0.15, 0.35)
        if rng.random() < 0.5:
            g0 = rng.uniform(0.35, 1.4)
            g1 = float(np.clip(g0 + outside(rng, 0.4, 1.0), 0.35, 1.4))
            if abs(g1 - g0) < 0.4:  # clipped at a bound: go the other way
                g1 = float(np.clip(g0 - np.sign(g1 - g0) * 0.4, 0.35, 1.4))
            gain = g0 + (g1 - g0) * tau
            labels.append(f"brightness-ramp-{g0:.2f}-{g1:.2f}")
        else:
            gain = rng.uniform(0.5, 1.3, frames)
            labels.append("brightness-flicker")
        fields["exposure_gain"] = [round(float(g), 3) for g in gain]
        fields["background"] = round(float(background), 3)
    else:
        background = rng.uniform(0.0, 0.12)
        gain = np.ones(frames)
    sigma = rng.uniform(0.04, 0.10) if "noise" in on else 0.01
    if "noise" in on:
        labels.append(f"noise-{sigma:.2f}")
        fields["noise_sigma"] = round(float(sigma), 3)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        cos, sin = np.cos(np.deg2rad(angle[k])), np.sin(np.deg2rad(angle[k]))
        lin = scale[k] * np.array([[cos, -sin], [sin, cos]])
        m = np.concatenate([lin, (pos[k] - lin @ c_src)[:, None]], axis=1)
        glyph = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0.0)
        rgb = gain[k] * (background + (ink_rgb - background) * np.clip(glyph, 0, 1)[..., None])
        rgb = rgb + rng.normal(0.0, sigma, rgb.shape)
        out[k] = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return out, {"condition": "+".join(labels), **fields}


def write_video(path: str | Path, frames: np.ndarray, fps: int) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames as an MPEG-4 .mp4 (temp name + rename)."""
    import av

    with atomic_path(path, durable=False) as tmp:  # the world.json written last marks a whole build
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"qscale": "2"}
            stream.codec_context.thread_count = 1  # threaded set-up costs more than a 32x32 clip
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    return Path(path)


def write_videos(folder: Path, cfg: WorldConfig, digits: DigitSet,
                 progress: bool = True) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """One clip per digit; manifest rows for the video and the two_stream modalities (same files)."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> None:
        write_video(path, render_clip(ink, rng, cfg.video_frames, cfg.video_size), cfg.video_fps)

    video = write_per_digit(folder, cfg, digits, "video", "video/{:05d}.mp4", write, progress)
    two_stream = {s: [{**row, "modality": "two_stream"} for row in rows] for s, rows in video.items()}
    return video, two_stream


def write_videos_hard(folder: Path, cfg: WorldConfig, digits: DigitSet,
                      progress: bool = True) -> tuple[list[dict], list[dict]]:
    """The hard split: ``video/hard/{k:05d}.mp4``; rows for the video and two_stream modalities (same files)."""
    def write(path: Path, ink: np.ndarray, rng: np.random.Generator) -> dict:
        clip, fields = render_clip_hard(ink, rng, cfg.video_frames, cfg.video_size)
        write_video(path, clip, cfg.video_fps)
        return fields

    video = write_hard_per_digit(folder, cfg, digits, "video", "video", "video/hard/{:05d}.mp4", write, progress)
    return video, [{**row, "modality": "two_stream"} for row in video]
