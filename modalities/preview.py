"""Pure drawing helpers for the previews modalities draw of their files (``Modality.preview``).

Nothing here reads a file or knows a modality: colour maps (OpenCV's perceptual maps, already a
dependency), percentile stretching, subsampling, shrinking, line plots of (channels, time) signals
and a plain text card, all drawn with numpy and Pillow, so no plotting library is needed. Each
modality module composes them with its own bounded reader; ``binder.serve.previews`` bounds,
encodes and serves the result.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PLOT_SIZE = (256, 128)
INVALID_RGB = (128, 128, 128)  # depth holes: a grey no perceptual colour map contains
BACKGROUND = (250, 250, 250)
INK = (60, 60, 60)
TITLE_INK = (20, 90, 160)
# Tableau 10: distinguishable line colours for up to ten channels.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
MAX_LANES = 8  # a series with more channels shows its first ones

Lanes = list[tuple[list[int], bool]]


def fit(img: Image.Image, size: int) -> Image.Image:
    """The image shrunk (never enlarged) to at most ``size`` px on its long side."""
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


# ---------------------------------------------------------------- colour maps and rasters


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (H, W) → uint8 RGB (H, W, 3) through OpenCV's perceptual colour maps."""
    import cv2

    code = {"viridis": cv2.COLORMAP_VIRIDIS, "inferno": cv2.COLORMAP_INFERNO, "magma": cv2.COLORMAP_MAGMA}[name]
    levels = np.clip(np.nan_to_num(values) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(levels, code)[..., ::-1])


def stretch(values: np.ndarray, mask: np.ndarray | None = None, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Values mapped to [0, 1] between two percentiles of the (masked) values; a flat map gives 0.5."""
    sample = values[mask] if mask is not None else values.ravel()
    if sample.size == 0:
        return np.full(values.shape, 0.5, np.float32)
    lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        return np.full(values.shape, 0.5, np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def shrink(arr: np.ndarray, size: int) -> np.ndarray:
    """A (H, W) array subsampled by an integer stride so its long side is at most ``2 * size``
    (nearest pixels: holes stay holes and no value is invented; ``fit`` smooths the rest)."""
    step = max(1, math.ceil(max(arr.shape) / (2 * size)))
    return np.ascontiguousarray(arr[::step, ::step])


# ---------------------------------------------------------------- signals


def signal_lanes(channels: int, groups: Sequence[Sequence[int]] = ()) -> Lanes:
    """How to lay channels out: (channel indices, one shared scale?) per lane.

    ``groups`` (channel indices that share a scale, e.g. an IMU's accelerometer and gyroscope) are
    used when they name exactly the channels there are; otherwise each lane holds one channel on
    its own scale (up to ``MAX_LANES``), or one lane holds three or fewer channels, each scaled to the lane.
    """
    if groups and sorted(c for g in groups for c in g) == list(range(channels)):
        return [(list(g), True) for g in groups]
    if channels <= 3:
        return [(list(range(channels)), False)]
    return [([c], False) for c in range(min(channels, MAX_LANES))]


def envelope(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x positions in [0, 1] and y values of a polyline that keeps peaks when there are more
    samples than columns (each column contributes its minimum and its maximum)."""
    n = values.size
    if n <= 2 * width:
        return np.linspace(0.0, 1.0, n), values
    bins = np.array_split(values, width)
    ys = np.ravel([(b.min(), b.max()) for b in bins])
    xs = np.repeat(np.linspace(0.0, 1.0, width), 2)
    return xs, ys


def plot_lines(data: np.ndarray, lanes: Lanes, size: tuple[int, int] = PLOT_SIZE, scale: int = 2) -> Image.Image:
    """A small line plot of (channels, time) ``data``, drawn at ``scale``× and shrunk (anti-aliased)."""
    w, h = size[0] * scale, size[1] * scale
    img = Image.new("RGB", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(img)
    lane_h = h / len(lanes)
    pad = 4 * scale
    for li, (chans, shared) in enumerate(lanes):
        top = li * lane_h
        if li:
            draw.line([(0, top), (w, top)], fill=(220, 220, 220), width=scale)
        lane = np.nan_to_num(data[chans].astype(np.float64))
        for ci, ch in enumerate(chans):
            ref = lane if shared else lane[ci:ci + 1]
            lo, hi = float(ref.min()), float(ref.max())
            xs, ys = envelope(lane[ci], w)
            level = (ys - lo) / (hi - lo) if hi > lo else np.full(ys.shape, 0.5)  # a flat line sits mid-lane
            px = pad + xs * (w - 2 * pad)
            py = top + pad + (1.0 - level) * (lane_h - 2 * pad)
            draw.line(list(zip(px.tolist(), py.tolist())), fill=PALETTE[ch % len(PALETTE)], width=scale)
    return img.resize(size, Image.Resampling.LANCZOS)


def plot_signal(data: np.ndarray, size: int, groups: Sequence[Sequence[int]] = ()) -> Image.Image:
    """A (channels, time) signal as a line plot ``size`` wide and half as high (lanes by ``signal_lanes``)."""
    return plot_lines(data, signal_lanes(data.shape[0], groups), (size, max(1, size // 2)))


# ---------------------------------------------------------------- cards


def card(path: str | Path, size: int, lines: Sequence[str] = (), title: str = "file") -> Image.Image:
    """A plain card: a title, the file name and optional lines of text (for modalities with no picture)."""
    img = Image.new("RGB", (size, size * 3 // 4), BACKGROUND)
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=max(10, size // 20))
    big = ImageFont.load_default(size=max(12, size // 14))
    draw.text((size // 16, size // 16), title, fill=TITLE_INK, font=big)
    y = size // 16 + size // 10
    draw.text((size // 16, y), clip_text(Path(path).name, 40), fill=INK, font=small)
    for line in list(lines)[:8]:
        y += size // 14
        draw.text((size // 16, y), clip_text(line, 40), fill=INK, font=small)
    return img


def clip_text(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, an ellipsis marking the cut."""
    return text if len(text) <= chars else text[: chars - 1] + "…"
