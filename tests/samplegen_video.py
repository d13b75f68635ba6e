"""Sample videos for the video and two-stream modalities, encoded with PyAV (mpeg4 in .mp4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from samplegen import maker


def write_video(path: str | Path, frames_uint8: np.ndarray, fps: int = 8) -> Path:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames (H, W even) as an mpeg4 video at high quality."""
    import av

    frames = np.asarray(frames_uint8, dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def moving_blob(num_frames: int = 12, size: int = 64, step: float = 3.0, sigma: float = 7.0) -> np.ndarray:
    """A bright warm blob moving right by ``step`` pixels per frame over a dark background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = []
    for t in range(num_frames):
        cx = size * 0.25 + step * t
        blob = np.exp(-((xx - cx) ** 2 + (yy - size / 2) ** 2) / (2 * sigma ** 2))
        frames.append(np.stack([blob, 0.7 * blob, 0.4 * blob], -1) * 230 + 15)
    return np.stack(frames).round().astype(np.uint8)


@maker("video")
def make_video(d: Path, seed: int = 0) -> Path:
    return write_video(d / f"clip{seed}.mp4", moving_blob(step=3.0 + seed % 2))


@maker("two_stream")
def make_two_stream(d: Path, seed: int = 0) -> Path:
    return write_video(d / f"clip{seed}.twostream.mp4", moving_blob(step=3.0 + seed % 2))
