"""Readers and checks shared by several modalities (arrays, tables, rasters, time axes).

Every reader here is bounded before it allocates: an ``.npy`` header is read and its declared size
checked against the file and against ``MAX_ARRAY_BYTES`` before any data is loaded, and text
tables (``.csv``, ``.ts``) are refused above ``MAX_TABLE_BYTES``. What is read is then checked for
NaN/Inf (``check_finite``) and, by each modality, for a sane range (``check_range``), because a
huge finite value overflows float32 arithmetic downstream and would come out as a NaN embedding.
"""
from __future__ import annotations

import contextlib
import csv
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from binder.errors import ModalityError

# Largest array an .npy file may declare (shape product × item size); bigger is refused unread.
MAX_ARRAY_BYTES = 512 * 2**20
# Largest .csv / .ts file read as a signal; they are parsed in Python, so this bounds time and memory.
MAX_TABLE_BYTES = 64 * 2**20
# Pillow's own decompression-bomb limit, the default ``max_pixels`` of image-like modalities.
MAX_PIXELS = 89_478_485


def check_file(path: str | os.PathLike) -> Path:
    """The path as a Path, after checking it names a non-empty regular file."""
    p = Path(path)
    if not p.is_file():
        raise ModalityError(path, "no such file")
    if p.stat().st_size == 0:
        raise ModalityError(path, "file is empty")
    return p


def check_finite(path: str | os.PathLike | None, array: np.ndarray) -> np.ndarray:
    """Reject NaN/inf values, which would silently poison every embedding they touch."""
    if array.size == 0:
        raise ModalityError(path, "contains no values")
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ModalityError(path, f"contains {bad} NaN or infinite values")
    return array


def check_range(path: str | os.PathLike | None, array: np.ndarray, max_abs: float,
                option: str = "max_abs") -> np.ndarray:
    """Refuse values whose magnitude exceeds ``max_abs``: finite but absurd values (1e30) overflow
    float32 features (power spectra, variances) and would come out as NaN embeddings."""
    if array.size and max_abs > 0:
        peak = float(np.max(np.abs(array)))
        if not peak <= max_abs:
            raise ModalityError(path, f"values out of range: max |x| = {peak:.3g} exceeds {max_abs:g} "
                                      f"(the modality option {option!r})")
    return array


def read_npy_header(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype an ``.npy`` file declares, checked before anything is allocated.

    Refuses object, complex and other non-real dtypes, a declared size above ``max_bytes``, and a
    file shorter than its header says (a 200-byte file cannot hold a (6, 10^11) array).
    """
    p = check_file(path)
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = reader(fh)  # numpy caps the header at 10,000 bytes
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ModalityError(path, f"truncated or not an .npy file ({exc})") from None
    _check_real_dtype(path, dtype)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    declared = count * dtype.itemsize
    if declared > max_bytes:
        raise ModalityError(path, f".npy declares shape {tuple(shape)} of {dtype} = {declared:,} bytes, more than the "
                                  f"limit of {max_bytes:,} (modalities.common.MAX_ARRAY_BYTES)")
    held = p.stat().st_size - offset
    if held < declared:
        raise ModalityError(path, f"truncated .npy: header declares shape {tuple(shape)} ({declared:,} bytes), "
                                  f"file holds {held:,}")
    return tuple(shape), dtype


def _check_real_dtype(path: str | os.PathLike, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise ModalityError(path, f".npy holds Python objects (dtype {dtype}); anybind never unpickles")
    if np.issubdtype(dtype, np.complexfloating):
        raise ModalityError(path, f".npy holds complex numbers (dtype {dtype}); anybind will not drop the "
                                  f"imaginary part: save the real signal (or its magnitude) instead")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ModalityError(path, f".npy holds dtype {dtype}, expected real numbers")


def read_npy(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """A real-valued .npy array as float32: header checked first (``read_npy_header``), never unpickled."""
    read_npy_header(path, max_bytes)
    try:
        arr = np.load(Path(path), allow_pickle=False)
    except ValueError as exc:
        raise ModalityError(path, f"not a plain numeric .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ModalityError(path, f"truncated or not an .npy file ({exc})") from None
    _check_real_dtype(path, arr.dtype)
    return check_finite(path, arr.astype(np.float32))


def check_table_size(path: str | os.PathLike, max_bytes: int = MAX_TABLE_BYTES) -> Path:
    """A non-empty text table no larger than ``max_bytes`` (it is parsed in Python, cell by cell)."""
    p = check_file(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise ModalityError(path, f"file is {size:,} bytes, more than the limit of {max_bytes:,} for "
                                  f"{p.suffix or 'text'} signals (modalities.common.MAX_TABLE_BYTES)")
    return p


def read_csv(path: str | os.PathLike) -> np.ndarray:
    """A numeric table (rows = time steps, columns = channels); one header row is skipped."""
    p = check_table_size(path)
    with open(p, newline="", encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and not _is_numeric_row(rows[0]):
        rows = rows[1:]
    if not rows:
        raise ModalityError(path, "CSV has no data rows")
    width = len(rows[0])
    try:
        data = [[float(c) for c in r] for r in rows if len(r) == width]
    except ValueError as exc:
        raise ModalityError(path, f"CSV has a non-numeric value ({exc})") from None
    if len(data) != len(rows):
        raise ModalityError(path, "CSV rows have different numbers of columns (truncated file?)")
    return check_finite(path, np.asarray(data, dtype=np.float32))


def _is_numeric_row(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def read_ts(path: str | os.PathLike) -> np.ndarray:
    """One series from a sktime/aeon ``.ts`` file as (channels, time); a class label is dropped."""
    p = check_table_size(path)
    has_label, in_data, cases = False, False, []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        low = line.lower()
        if low.startswith(("@classlabel", "@targetlabel")):
            has_label = low.split()[1:2] == ["true"]
        elif low.startswith("@data"):
            in_data = True
        elif in_data:
            cases.append(line)
    if not in_data:
        raise ModalityError(path, ".ts file has no @data section")
    if len(cases) != 1:
        raise ModalityError(path, f".ts file holds {len(cases)} series; anybind embeds one series per file")
    dims = cases[0].split(":")
    if has_label:
        dims = dims[:-1]
    try:
        chans = [[float(v) for v in d.split(",")] for d in dims]
    except ValueError as exc:
        raise ModalityError(path, f".ts series has a non-numeric value ({exc})") from None
    if not chans or len({len(c) for c in chans}) != 1:
        raise ModalityError(path, ".ts series has no values or channels of unequal length")
    return check_finite(path, np.asarray(chans, dtype=np.float32))


def to_channels_first(path: str | os.PathLike | None, arr: np.ndarray, channels: int | None) -> np.ndarray:
    """A 2-D (channels, time) array; a (time, channels) array is transposed when that fits.

    Errors report the shape the file holds, not an intermediate one.
    """
    original = tuple(arr.shape)
    if arr.ndim == 1 and channels in (None, 1):
        arr = arr[None, :]
    if arr.ndim != 2:
        want = f"{channels} channels × time" if channels else "channels × time"
        raise ModalityError(path, f"expected a 2-D ({want}) array, got shape {original}")
    if channels is not None:
        if arr.shape[0] != channels and arr.shape[1] == channels:
            arr = arr.T
        if arr.shape[0] != channels:
            raise ModalityError(path, f"expected {channels} channels, got shape {original}")
    elif arr.shape[0] > arr.shape[1]:
        arr = arr.T  # series are longer than they are wide
    return np.ascontiguousarray(arr)


_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = 0
_SAVED_FD: int | None = None


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native decoders (decord, ffmpeg, libsndfile) print to file descriptor 2.

    Their log lines ("moov atom not found", decord's C++ errors) would come before anybind's own
    one-line error and look like a crash. fd 2 is pointed at /dev/null while any thread is inside
    (a counter, so concurrent decode threads nest safely) and restored when the last one leaves.
    Python-level errors are unaffected: they are raised, not printed, inside these blocks.
    """
    global _QUIET_DEPTH, _SAVED_FD
    with _QUIET_LOCK:
        if _QUIET_DEPTH == 0:
            _SAVED_FD = _redirect_stderr_to_null()
        _QUIET_DEPTH += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH -= 1
            if _QUIET_DEPTH == 0 and _SAVED_FD is not None:
                _restore_stderr(_SAVED_FD)
                _SAVED_FD = None


def _redirect_stderr_to_null() -> int | None:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return None  # no real fd 2 (embedded interpreter): nothing to silence
    os.dup2(null, 2)
    os.close(null)
    return saved


def _restore_stderr(saved: int) -> None:
    os.dup2(saved, 2)
    os.close(saved)


def check_pixels(path: str | os.PathLike, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels, before it is decoded."""
    w, h = size
    if w * h > max_pixels:
        raise ModalityError(path, f"image is {w}x{h} = {w * h:,} pixels, more than max_pixels {max_pixels:,} "
                                  f"(a decompression bomb or an oversized file)")


@contextlib.contextmanager
def open_image(path: str | os.PathLike, max_pixels: int) -> Iterator[Image.Image]:
    """Open an image with Pillow, refuse it by its header size, then decode it; errors name the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixels(path, im.size, max_pixels)
                im.load()
                yield im
    except Image.DecompressionBombError as exc:
        raise ModalityError(path, f"image is a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ModalityError(path, f"not a readable image ({exc})") from None


def resample_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling of a (channels, time) tensor to ``length`` steps."""
    if x.shape[-1] == length:
        return x
    return F.interpolate(x[None], size=length, mode="linear", align_corners=True)[0]


def resize_center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side of a (C, H, W) raster to ``size`` then center-crop a square."""
    _, h, w = img.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[:, top:top + size, left:left + size]


def standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit variance over ``dims`` (constant inputs map to zeros, not NaN)."""
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)
