"""Small PNG previews of indexed files for the search page: each modality draws its own.

``make_preview`` asks the file's modality (``Modality.preview``, so a plugin modality brings its
own picture) and bounds, encodes and types the result: at most ``MAX_SIZE`` pixels on its long
side, PNG, and a ``PreviewError`` (422) naming the file for anything that goes wrong. The
modalities read with their own bounded readers, so a hostile or damaged file is refused rather
than decoded blindly. What the built-in modalities draw:

- image: the picture itself, EXIF rotation applied (JPEGs are decoded at a reduced scale);
- audio, speech units: a log-mel spectrogram (librosa) of the first 30 seconds (magma);
- depth: disparity less its dominant plane (a wall's or table's tilt), contrast-stretched, in
  viridis: what stands out toward the camera bright; invalid pixels (0 or negative depth) grey;
- thermal: intensity less its dominant plane, stretched between the 1st and 99th percentiles of
  what is left, in inferno: what is warmer than its surroundings bright;
- video, two-stream video: the middle frame (the poster of the page's player);
- IMU, time series: a line plot drawn with Pillow (accelerometer and gyroscope in two lanes);
- text, a modality with no picture of its own, and a name no modality has: a card with the
  modality, the file name and, for text, its first lines.

The drawing helpers live in ``modalities.preview``; the names re-exported here are kept for callers.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from binder.errors import ModalityError, RegistryError
from binder.registry import get_modality
from binder.serve.errors import ServeError
from modalities.audio import read_audio_head
from modalities.preview import INVALID_RGB, PALETTE, Lanes, card, fit
from modalities.preview import signal_lanes as lanes

__all__ = ["INVALID_RGB", "MAX_SIZE", "PALETTE", "PreviewError", "fit", "make_preview", "read_audio_head",
           "signal_lanes", "to_png"]

MAX_SIZE = 256  # longest side of every preview, in pixels


class PreviewError(ServeError):
    """A preview could not be made: the file is unreadable or damaged (422)."""

    status, kind = 422, "preview_failed"


def make_preview(path: str | os.PathLike, modality: str, size: int = MAX_SIZE) -> bytes:
    """PNG bytes of a preview of ``path`` read as ``modality``, at most ``size`` px on its long side.

    The modality draws it (``Modality.preview``, with default options); a name no registered
    modality has gets a card. Raises ``PreviewError`` (never another exception) naming the file
    and what went wrong.
    """
    p = Path(path)
    try:
        try:
            klass = get_modality(modality)
        except RegistryError:
            img = card(p, size, title=modality)
        else:
            img = klass().preview(p, size)
    except ModalityError as exc:
        raise PreviewError(str(exc)) from None
    except PreviewError:
        raise
    except Exception as exc:  # decoders raise their own types; none of them reaches a user as a traceback
        raise PreviewError(f"{p}: cannot make a {modality} preview ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, Image.Image):
        raise PreviewError(f"{p}: the {modality} modality's preview returned {type(img).__name__}, not an image")
    return to_png(fit(img, size))


def to_png(img: Image.Image) -> bytes:
    """Encode an image as PNG (RGB or RGBA kept, anything else converted to RGB)."""
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def signal_lanes(modality: str, channels: int) -> Lanes:
    """The lanes of a signal modality's preview (``modalities.preview.signal_lanes`` with the
    modality's ``lane_groups``, if it declares any: IMU's accelerometer and gyroscope)."""
    try:
        groups = getattr(get_modality(modality), "lane_groups", ())
    except RegistryError:
        groups = ()
    return lanes(channels, groups)
