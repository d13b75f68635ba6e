"""Video: the digit moving across a dark canvas, encoded as MPEG-4 Part 2.

Per digit: the glyph (bicubic, scaled to 55-65 % of the ``video_size`` canvas) travels along a
quadratic Bézier path: a random start and end (at least a third of the free range apart) and a
control point pushed sideways by up to 30 % of the travel (slight curvature). Start, end and
control point lie inside the box of positions that keep the glyph fully in frame, so the whole
path does (a Bézier curve stays in the convex hull of its points). Positions are sub-pixel
(bilinear warp); the ink has a random brightness (0.75-1.0) and a faint colour tint, the
background a random dark level, plus a little sensor noise.

``video_frames`` frames at ``video_fps`` are encoded with PyAV (codec ``mpeg4``, yuv420p, even
sizes, qscale 2) into ``video/{index:05d}.mp4``. The ``video`` and ``two_stream`` manifests point at
the same files (the two-stream modality computes its optical flow itself).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from recipes.world.common import atomic_path
from recipes.world.config import WorldConfig
from recipes.world.images import DigitSet, upscale, write_per_digit


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


def write_video(path: str | Path, frames: np.ndarray, fps: int) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames as an MPEG-4 .mp4 (temp name + rename)."""
    import av

    with atomic_path(path) as tmp:
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
