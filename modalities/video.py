"""Video: T frames sampled uniformly over a clip, embedded as Conv3d tubelets (ImageBind style).

Frames are decoded with decord when it is installed and can open the file, otherwise with PyAV
(the ffmpeg bindings), so a missing or broken decord never stops a video from being read.
``read_frames`` is shared with the two-stream (RGB + optical flow) modality.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from binder.errors import AnybindError, ConfigError, ModalityError
from binder.registry import register_modality
from binder.tokenizers import SequenceEmbedding, TubeletTokens
from modalities.augment import video as aug
from modalities.augment.video import VideoAugment, augment_frames
from modalities.base import Modality, Perturber
from modalities.common import check_file, quiet_native_stderr, resize_center_crop
from modalities.raster import center_box

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKENDS = ("auto", "decord", "pyav")
DECORD_HINT = ("decord is not installed: pip install 'anybind[decord]' (x86-64 wheels only), "
               "or use backend 'pyav' ('auto' falls back to it by itself)")
MAX_PIXELS = 7680 * 4320  # 8K UHD per frame: the default ``max_pixels``, probed before decoding


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """Frame sampling, resizing and tubelet options of a video modality.

    ``num_frames`` frames (T) are sampled; ``tubelet`` is (time, height, width) of one token and
    must divide (T, image_size, image_size) so no frame or pixel is silently dropped.
    ``max_pixels`` bounds one frame (width × height, read from the stream header before decoding).
    """

    num_frames: int = 4
    image_size: int = 224
    tubelet: tuple[int, int, int] = (2, 16, 16)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    min_frames: int = 2
    backend: str = "auto"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "tubelet", tuple(int(k) for k in self.tubelet))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.num_frames < 1 or self.min_frames < 1 or self.image_size < 1:
            raise ConfigError("num_frames, min_frames and image_size must be >= 1")
        if len(self.tubelet) != 3 or len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("tubelet, mean and std need 3 values each (std > 0)")
        t, h, w = self.tubelet
        if self.num_frames % t or self.image_size % h or self.image_size % w:
            raise ConfigError(f"tubelet {self.tubelet} must divide (num_frames, image_size, image_size) = "
                             f"({self.num_frames}, {self.image_size}, {self.image_size})")


# ---------------------------------------------------------------- decoding


class _DecodeError(Exception):
    """A backend could not decode the file; the next backend may still manage."""


def uniform_indices(n: int, num: int) -> np.ndarray:
    """``num`` frame indices spread evenly over ``[0, n - 1]`` (repeating frames when ``n < num``)."""
    return np.linspace(0, n - 1, num).round().astype(np.int64)


def _plan(path: Path, n: int, num_frames: int, min_frames: int) -> np.ndarray:
    """Indices to read from a clip of ``n`` frames, after checking it is long enough."""
    if n <= 0:
        raise ModalityError(path, "video contains no frames")
    if n < max(min_frames, 2):
        raise ModalityError(path, f"video has only {n} frame(s); at least {max(min_frames, 2)} are needed")
    return uniform_indices(n, num_frames)


def _read_decord(path: Path, num_frames: int, min_frames: int) -> np.ndarray:
    import decord  # imported here so a missing or broken decord falls back to PyAV

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # decord raises RuntimeError / DECORDError on anything it cannot open
        raise _DecodeError(_first_line(exc)) from exc
    idx = _plan(path, len(reader), num_frames, min_frames)
    try:
        batch = reader.get_batch(idx.tolist())
    except Exception as exc:
        raise _DecodeError(_first_line(exc)) from exc
    return np.asarray(batch.asnumpy() if hasattr(batch, "asnumpy") else batch)


def _pyav_decode(path: Path, wanted: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame once, keeping only ``wanted`` indices as RGB arrays; also count frames."""
    import av

    kept: dict[int, np.ndarray] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _DecodeError("file has no video stream")
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 in wanted:
                    kept[count - 1] = frame.to_ndarray(format="rgb24")
    except _DecodeError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...) and friends
        raise _DecodeError(_first_line(exc)) from exc
    return kept, count


def _read_pyav(path: Path, num_frames: int, min_frames: int) -> np.ndarray:
    """Two passes at most: the container's frame count is a hint that is checked by decoding."""
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            hint = int(streams[0].frames) if streams else 0
    except Exception as exc:
        raise _DecodeError(_first_line(exc)) from exc
    idx = _plan(path, hint, num_frames, min_frames) if hint > 0 else np.zeros(0, np.int64)
    kept, n = _pyav_decode(path, set(idx.tolist()))
    if n != hint or hint == 0:  # no or wrong count in the header: now we know the real one
        idx = _plan(path, n, num_frames, min_frames)
        kept, n2 = _pyav_decode(path, set(idx.tolist()))
        if n2 != n:
            raise _DecodeError(f"decoding gave {n} then {n2} frames")
    return np.stack([kept[i] for i in idx.tolist()])


_READERS: dict[str, Callable[[Path, int, int], np.ndarray]] = {"decord": _read_decord, "pyav": _read_pyav}


_NATIVE_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:[0-9]+: ")  # decord's "[17:10:51] src/x.cc:151: "


def _first_line(exc: BaseException) -> str:
    """The first line of a decoder's message, without decord's timestamp and source-file prefix."""
    text = str(exc).strip().splitlines()
    first = _NATIVE_PREFIX.sub("", text[0]) if text else ""
    return f"{type(exc).__name__}: {first[:200]}"


def read_frames(path: str | os.PathLike, num_frames: int, min_frames: int = 2, backend: str = "auto",
                max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``num_frames`` RGB frames sampled uniformly over the whole clip, uint8 ``(T, H, W, 3)``.

    ``backend="auto"`` tries decord, then PyAV when decord is not installed or cannot decode the
    file. Every failure (missing, empty, truncated or non-video file, fewer than
    ``max(min_frames, 2)`` frames, frames above ``max_pixels``) raises ``ModalityError(path, reason)``.
    The decoders' native log lines are silenced (``quiet_native_stderr``): the error says it all.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    p = check_file(path)
    names = ("decord", "pyav") if backend == "auto" else (backend,)
    failures = []
    with quiet_native_stderr():
        _probe_frame_size(p, max_pixels)
        for name in names:
            try:
                frames = _READERS[name](p, num_frames, min_frames)
            except ImportError as exc:
                if backend != "auto":  # asked for by name: not the file's fault, so not a ModalityError
                    raise AnybindError(DECORD_HINT) from exc
                failures.append(f"{name} is not installed ({exc})")
            except _DecodeError as exc:
                failures.append(f"{name}: {exc}")
            else:
                return _check_frames(path, frames)
    raise ModalityError(path, "cannot decode video (truncated or not a video file?): " + "; ".join(failures))


def _probe_frame_size(path: Path, max_pixels: int) -> None:
    """Refuse frames larger than ``max_pixels`` from the stream header, before any frame is decoded.

    A file PyAV cannot open is left to the decoders, which report it.
    """
    try:
        import av

        with av.open(str(path)) as container:
            streams = container.streams.video
            width, height = (streams[0].codec_context.width, streams[0].codec_context.height) if streams else (0, 0)
    except Exception:  # not openable by PyAV: decord may still read it, or the error comes from decoding
        return
    if width * height > max_pixels:
        raise ModalityError(path, f"video frames are {width}x{height} = {width * height:,} pixels, more than "
                                  f"max_pixels {max_pixels:,}")


def _check_frames(path: str | os.PathLike, frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ModalityError(path, f"decoder returned frames of shape {frames.shape} and dtype {frames.dtype}")
    return np.ascontiguousarray(frames)


# ---------------------------------------------------------------- tensors


def resize_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → float ``(T, 3, S, S)`` in [0, 1]: short side resized, center crop."""
    t, h, w, c = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    x = resize_center_crop(x.reshape(t * c, h, w), image_size)  # one call resizes every frame alike
    return x.reshape(t, c, image_size, image_size).clamp_(0.0, 1.0)


def normalize_frames(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(T, 3, S, S)`` in [0, 1] → channels-first clip ``(3, T, S, S)`` normalized by mean/std."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / s).permute(1, 0, 2, 3).contiguous()


def as_frames(raw: Any, num_frames: int) -> np.ndarray:
    """Validate decoded frames and resample them uniformly to ``num_frames`` (the length policy)."""
    frames = np.asarray(raw)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ModalityError(None, f"expected uint8 frames (T, H, W, 3), got {frames.shape} {frames.dtype}")
    if len(frames) != num_frames:
        frames = frames[uniform_indices(len(frames), num_frames)]
    return frames


class VideoTokenizer(nn.Module):
    """``(B, C, T, S, S)`` → Conv3d tubelets → CLS + positions → ``(B, 1 + N, width)``."""

    def __init__(self, in_chans: int, width: int, input_thw: tuple[int, int, int], tubelet: tuple[int, int, int]):
        super().__init__()
        self.tubelets = TubeletTokens(in_chans, width, input_thw, tubelet)
        self.seq = SequenceEmbedding(self.tubelets.num_tokens, width, positions=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(self.tubelets.embed(x))


def poster_preview(path: str | os.PathLike, size: int) -> Image.Image:
    """The middle frame of the clip (frames 0, middle and last are decoded, the middle one kept):
    the poster of the page's player (video and two-stream video)."""
    frames = read_frames(path, num_frames=3, min_frames=2)
    return Image.fromarray(frames[1], "RGB")


VIDEO_PERTURBATIONS: dict[str, Perturber] = {
    "crop": Perturber(lambda raw, v, rng, mod: aug.crop_frames(raw, center_box(np.shape(raw)[1:3], v)),
                      "keep this share of the area (centre), resized back"),
    "offset": Perturber(lambda raw, v, rng, mod: aug.temporal_shift(raw, int(v)), "shift by this many frames"),
    "stride": Perturber(lambda raw, v, rng, mod: aug.select_frames(raw, aug.frame_indices(len(raw), 0.0, v)),
                        "frame-rate change: take every v-th frame"),
    "rotate": Perturber(lambda raw, v, rng, mod: aug.rotate_frames(raw, v), "turn every frame by this many degrees"),
}
"""Named perturbations of decoded frames ``(T, H, W, 3)`` (video and two-stream video)."""


@register_modality
class Video(Modality):
    """T frames sampled uniformly over the whole clip (frames repeat when the clip is shorter);
    fewer than min_frames is an error.

    Output of ``preprocess``: ``(3, T, S, S)`` float, short side resized to S then center-cropped,
    normalized with CLIP's mean/std. Tokens: ``tubelet``-sized Conv3d patches plus CLS.
    """

    name = "video"
    extensions = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
    Options = VideoOptions
    AugmentOptions = VideoAugment

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: VideoAugment) -> np.ndarray:
        """T of the decoded frames (temporal offset, jitter, frame-rate change), spatial crop and, when
        asked for, photometric changes and noise (modalities.augment.video)."""
        return augment_frames(raw, rng, options, count=self.options.num_frames)

    def load_for_training(self, path: str | os.PathLike, augment_options: Any) -> np.ndarray:
        """``decode_count(T)`` frames (2T by default) spread uniformly over the clip when augmentation is
        on, so temporal augmentation picks among real frames; else the T of ``load_checked``."""
        if not (isinstance(augment_options, VideoAugment) and augment_options.enabled):
            return self.load_checked(path)
        o = self.options
        with self._named_errors(path):
            return read_frames(path, augment_options.decode_count(o.num_frames), o.min_frames, o.backend,
                               o.max_pixels)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Decode T uniformly spaced RGB frames, uint8 ``(T, H, W, 3)``."""
        o = self.options
        return read_frames(path, o.num_frames, o.min_frames, o.backend, o.max_pixels)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """Frames → ``(3, T, S, S)`` normalized clip."""
        o = self.options
        frames = as_frames(raw, o.num_frames)
        return normalize_frames(resize_frames(frames, o.image_size), o.mean, o.std)

    def input_shape(self) -> tuple[int, ...]:
        o = self.options
        return (3, o.num_frames, o.image_size, o.image_size)

    def build_tokenizer(self, cfg: VideoOptions, width: int) -> nn.Module:
        """Tubelet tokenizer for ``(B, 3, T, S, S)`` clips → ``(B, 1 + N, width)``."""
        return VideoTokenizer(3, width, (cfg.num_frames, cfg.image_size, cfg.image_size), cfg.tubelet)

    def preview(self, path: Path, size: int) -> Image.Image:
        """The middle frame (``poster_preview``)."""
        return poster_preview(path, size)

    def perturbations(self) -> dict[str, Perturber]:
        """Centre crop, temporal offset, frame-rate change and rotation (``VIDEO_PERTURBATIONS``)."""
        return VIDEO_PERTURBATIONS
