"""Small PNG previews of indexed files, one function per modality family, for the search page.

Every preview is read with the modality's own bounded readers (``modalities.common``,
``modalities.raster``, ``modalities.video``, ``modalities.signals``), so a hostile or damaged file
is refused with a typed error instead of being decoded blindly, and is at most ``MAX_SIZE`` pixels
on its long side:

- image: the picture itself, EXIF rotation applied (JPEGs are decoded at a reduced scale);
- audio, speech units: a log-mel spectrogram of the first ``AUDIO_SECONDS`` seconds (magma);
- depth: disparity (near is bright) in viridis, invalid pixels (0 or negative depth) in grey;
- thermal: intensity in inferno, stretched between the 1st and 99th percentiles;
- video, two-stream video: the middle frame (the poster of the page's player);
- IMU, time series: a line plot drawn with Pillow (accelerometer and gyroscope in two lanes);
- text and any other modality: a card with the modality, the file name and, for text, its first lines.

Colour maps come from OpenCV (already a dependency), lines from Pillow: no plotting library is needed.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from binder.errors import ModalityError
from binder.serve.errors import ServeError

MAX_SIZE = 256  # longest side of every preview, in pixels
AUDIO_SECONDS = 30.0  # an audio preview shows the start of the recording
PLOT_SIZE = (256, 128)
INVALID_RGB = (128, 128, 128)  # depth holes: a grey no perceptual colour map contains
BACKGROUND = (250, 250, 250)
INK = (60, 60, 60)
# Tableau 10: distinguishable line colours for up to ten channels.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
MAX_LANES = 8  # a series with more channels shows its first ones


class PreviewError(ServeError):
    """A preview could not be made: the file is unreadable or damaged (422)."""

    status, kind = 422, "preview_failed"


Previewer = Callable[[Path, int], Image.Image]


def make_preview(path: str | os.PathLike, modality: str, size: int = MAX_SIZE) -> bytes:
    """PNG bytes of a preview of ``path`` read as ``modality``, at most ``size`` px on its long side.

    Raises ``PreviewError`` (never another exception) naming the file and what went wrong.
    """
    p = Path(path)
    fn = PREVIEWERS.get(modality) or (lambda path, size: card_preview(path, size, title=modality))
    try:
        img = fn(p, size)
    except ModalityError as exc:
        raise PreviewError(str(exc)) from None
    except PreviewError:
        raise
    except Exception as exc:  # decoders raise their own types; none of them reaches a user as a traceback
        raise PreviewError(f"{p}: cannot make a {modality} preview ({type(exc).__name__}: {exc})") from None
    return to_png(fit(img, size))


def to_png(img: Image.Image) -> bytes:
    """Encode an image as PNG (RGB or RGBA kept, anything else converted to RGB)."""
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def fit(img: Image.Image, size: int) -> Image.Image:
    """The image shrunk (never enlarged) to at most ``size`` px on its long side."""
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


# ---------------------------------------------------------------- images


def image_preview(path: Path, size: int) -> Image.Image:
    """The image, decoded at reduced scale where the format allows (JPEG draft), EXIF-rotated."""
    from modalities.common import MAX_PIXELS, check_file, check_pixels

    check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixels(path, im.size, MAX_PIXELS)
                im.draft("RGB", (size, size))
                im.load()
                out = ImageOps.exif_transpose(im)
                return out.convert("RGBA" if "A" in out.getbands() else "RGB")
    except Image.DecompressionBombError as exc:
        raise ModalityError(path, f"image is a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ModalityError(path, f"not a readable image ({exc})") from None


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


def depth_preview(path: Path, size: int) -> Image.Image:
    """Disparity (1/depth, or the file's own disparity) in viridis, near bright; holes grey."""
    from modalities.raster import read_raster

    arr, _bits = read_raster(path)
    arr = shrink(arr, size)
    valid = np.isfinite(arr) & (arr > 0)
    if ".disparity." in path.name.lower():
        disp = np.where(valid, arr, 0.0)
    else:
        disp = np.where(valid, 1.0 / np.where(valid, arr, 1.0), 0.0)
    rgb = colormap(stretch(disp, valid), "viridis")
    rgb[~valid] = INVALID_RGB
    return Image.fromarray(rgb, "RGB")


def thermal_preview(path: Path, size: int) -> Image.Image:
    """Intensity (raw counts or temperature) stretched between its 1st and 99th percentiles, inferno."""
    from modalities.raster import read_raster

    arr, _bits = read_raster(path)
    return Image.fromarray(colormap(stretch(shrink(arr, size)), "inferno"), "RGB")


# ---------------------------------------------------------------- audio


def read_audio_head(path: Path, seconds: float = AUDIO_SECONDS) -> tuple[np.ndarray, int]:
    """Mono float32 samples of the first ``seconds`` of a recording and their sample rate.

    libsndfile formats are read frame-bounded; anything else goes through librosa with a duration,
    so a long file is never decoded whole for a preview. Errors name the file.
    """
    import soundfile

    from modalities.common import check_file, quiet_native_stderr

    check_file(path)
    try:
        with quiet_native_stderr():
            info = soundfile.info(os.fspath(path))
            wave, sr = soundfile.read(os.fspath(path), frames=int(seconds * info.samplerate), dtype="float32",
                                      always_2d=True)
        wave = wave.mean(axis=1)
    except Exception:  # not a libsndfile format (m4a, ...): librosa's decoders, bounded by duration
        wave, sr = _librosa_head(path, seconds)
    if wave.size == 0:
        raise ModalityError(path, "audio file holds no samples")
    return np.nan_to_num(wave.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), int(sr)


def _librosa_head(path: Path, seconds: float) -> tuple[np.ndarray, int]:
    import librosa

    from modalities.common import quiet_native_stderr

    try:
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            wave, sr = librosa.load(os.fspath(path), sr=None, mono=True, duration=seconds)
    except Exception as exc:
        raise ModalityError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    return np.asarray(wave, np.float32), int(sr)


def mel_filters(sr: int, n_fft: int, mels: int) -> np.ndarray:
    """Triangular filters on the HTK mel scale from 20 Hz to Nyquist, (mels, n_fft // 2 + 1)."""
    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges_mel = np.linspace(to_mel(np.array(20.0)), to_mel(np.array(sr / 2.0)), mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / np.maximum(edges[1:-1, None] - edges[:-2, None], 1e-9)
    upper = (edges[2:, None] - freqs[None, :]) / np.maximum(edges[2:, None] - edges[1:-1, None], 1e-9)
    return np.maximum(0.0, np.minimum(lower, upper))


def spectrogram(wave: np.ndarray, sr: int, width: int = MAX_SIZE, mels: int = 64) -> np.ndarray:
    """Log-mel power in dB below the peak (80 dB range) scaled to [0, 1], low frequencies at the
    bottom: (mels, frames), about ``width`` frames of ~32 ms Hann windows. Plain numpy (no JIT warm-up)."""
    n_fft = 1 << max(8, math.ceil(math.log2(sr * 0.032)))
    wave = np.pad(wave, (0, max(0, n_fft - wave.size)))
    hop = max(1, (wave.size - n_fft) // max(1, width - 1))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop][:width]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    mel = mel_filters(sr, n_fft, mels) @ power.T
    db = 10.0 * np.log10(np.maximum(mel, 1e-12) / max(float(mel.max()), 1e-12))
    return (np.clip(db, -80.0, 0.0) / 80.0 + 1.0)[::-1]


def audio_preview(path: Path, size: int) -> Image.Image:
    """A magma log-mel spectrogram of the recording's start, ``size`` wide and half as high."""
    wave, sr = read_audio_head(path)
    img = Image.fromarray(colormap(spectrogram(wave, sr, width=size), "magma"), "RGB")
    return img.resize((size, max(1, size // 2)), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------- video


def video_preview(path: Path, size: int) -> Image.Image:
    """The middle frame of the clip (frames 0, middle and last are decoded, the middle one kept)."""
    from modalities.video import read_frames

    frames = read_frames(path, num_frames=3, min_frames=2)
    return Image.fromarray(frames[1], "RGB")


# ---------------------------------------------------------------- signals


def signal_lanes(modality: str, channels: int) -> list[tuple[list[int], bool]]:
    """How to lay channels out: (channel indices, one shared scale?) per lane.

    IMU in the usual 6-channel order gets an accelerometer lane and a gyroscope lane, each on one
    scale so the axes compare; other series get one lane per channel on its own scale (up to
    ``MAX_LANES``), or one lane of three or fewer channels, each scaled to the lane.
    """
    if modality == "imu" and channels == 6:
        return [([0, 1, 2], True), ([3, 4, 5], True)]
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


def plot_lines(data: np.ndarray, lanes: list[tuple[list[int], bool]], size: tuple[int, int] = PLOT_SIZE,
               scale: int = 2) -> Image.Image:
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


def signal_preview(path: Path, size: int, modality: str = "timeseries") -> Image.Image:
    """A line plot of an IMU or time-series file ((channels, time) after reading)."""
    from modalities.signals import read_signal

    data = read_signal(path)
    return plot_lines(data, signal_lanes(modality, data.shape[0]), (size, max(1, size // 2)))


# ---------------------------------------------------------------- text and everything else


def card_preview(path: Path, size: int, lines: list[str] | None = None, title: str = "file") -> Image.Image:
    """A plain card: a title, the file name and optional lines of text (for modalities with no picture)."""
    img = Image.new("RGB", (size, size * 3 // 4), BACKGROUND)
    draw = ImageDraw.Draw(img)
    small = ImageFont.load_default(size=max(10, size // 20))
    big = ImageFont.load_default(size=max(12, size // 14))
    draw.text((size // 16, size // 16), title, fill=(20, 90, 160), font=big)
    y = size // 16 + size // 10
    draw.text((size // 16, y), _clip_text(path.name, 40), fill=INK, font=small)
    for line in (lines or [])[:8]:
        y += size // 14
        draw.text((size // 16, y), _clip_text(line, 40), fill=INK, font=small)
    return img


def text_preview(path: Path, size: int) -> Image.Image:
    """A card with the first lines of a text file (the page itself shows a snippet from the file)."""
    from modalities.common import check_file

    with open(check_file(path), "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace")
    return card_preview(path, size, [ln for ln in head.splitlines() if ln.strip()], title="text")


def _clip_text(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


PREVIEWERS: dict[str, Previewer] = {
    "image": image_preview,
    "audio": audio_preview,
    "speech_units": audio_preview,
    "depth": depth_preview,
    "thermal": thermal_preview,
    "video": video_preview,
    "two_stream": video_preview,
    "imu": lambda path, size: signal_preview(path, size, "imu"),
    "timeseries": lambda path, size: signal_preview(path, size, "timeseries"),
    "text": text_preview,
}
