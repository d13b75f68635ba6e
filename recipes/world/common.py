"""Helpers every stage shares: per-item random generators, atomic writes, progress bars."""
from __future__ import annotations

import os
import re
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from binder.io import atomic_path


def rng_for(seed: int, stage: str, index: int = 0) -> np.random.Generator:
    """An independent generator for one item of one stage: the output of item i never depends on
    the order items are built in or on which other stages run."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode()), index])


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """uint8 grey/RGB or uint16 grey PNG, written atomically."""
    arr = np.ascontiguousarray(array)
    if arr.dtype == np.uint16 and arr.ndim != 2:
        raise ValueError("16-bit PNGs must be single-channel")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"save_png needs uint8 or uint16, got {arr.dtype}")
    img = Image.fromarray(arr)  # uint16 (H, W) -> mode I;16
    with atomic_path(path, durable=False) as tmp:  # the world.json written last marks a whole build
        img.save(tmp, format="PNG")


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, durable=False) as tmp:  # the world.json written last marks a whole build
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr (a no-op object when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"world: {desc}", file=sys.stderr, disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=0.5)


def relpath(path: Path, folder: Path) -> str:
    """Path relative to the world folder, with forward slashes (the manifests' convention)."""
    return path.relative_to(folder).as_posix()


def pick_conditions(rng: np.random.Generator, names: tuple[str, ...], p: float = 0.5) -> list[str]:
    """A random non-empty subset of ``names`` (each on with probability ``p``; one at random when none is)."""
    on = [name for name in names if rng.random() < p]
    return on or [names[int(rng.integers(len(names)))]]


def condition_names(condition: str) -> list[str]:
    """The condition names in a hard row's ``condition`` label, in order (``"pad-1.2s-0.4s+gain+3dB"`` →
    ``["pad", "gain"]``): labels are joined by "+", and a "+" inside a label only ever signs a number."""
    return [re.match(r"[a-z_]*", part).group(0) or part for part in re.split(r"\+(?=[a-z])", condition)]


def outside(rng: np.random.Generator, low: float, high: float) -> float:
    """A magnitude in [low, high] with a random sign (a value outside ±low, e.g. a tilt beyond the training range)."""
    return float(rng.uniform(low, high) * rng.choice((-1.0, 1.0)))
