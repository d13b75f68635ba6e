"""Readers and checks shared by several modalities (arrays, tables, rasters, time axes)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from binder.errors import ModalityError


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


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A numeric .npy array, never unpickling object arrays."""
    p = check_file(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ModalityError(path, f"not a plain numeric .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ModalityError(path, f"truncated or not an .npy file ({exc})") from None
    if not np.issubdtype(arr.dtype, np.number):
        raise ModalityError(path, f".npy holds dtype {arr.dtype}, expected numbers")
    return check_finite(path, arr.astype(np.float32))


def read_csv(path: str | os.PathLike) -> np.ndarray:
    """A numeric table (rows = time steps, columns = channels); one header row is skipped."""
    p = check_file(path)
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
    p = check_file(path)
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
    """A 2-D (channels, time) array; a (time, channels) array is transposed when that fits."""
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ModalityError(path, f"expected a 2-D (channels, time) array, got shape {arr.shape}")
    if channels is not None:
        if arr.shape[0] != channels and arr.shape[1] == channels:
            arr = arr.T
        if arr.shape[0] != channels:
            raise ModalityError(path, f"expected {channels} channels, got shape {arr.shape}")
    elif arr.shape[0] > arr.shape[1]:
        arr = arr.T  # series are longer than they are wide
    return np.ascontiguousarray(arr)


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
