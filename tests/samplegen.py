"""Small real-format sample files for every built-in modality, written into a test's tmp dir.

``MAKERS[name](dir) -> path`` writes one valid file of that modality. Modality areas add their
makers in their own ``samplegen_*.py`` module; this module gathers them.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Maker = Callable[[Path], Path]

# Modality options that keep every input small (tests build models holding all of these).
SMALL_OPTIONS: dict[str, dict] = {
    "image": {},
    "text": {},
    "depth": dict(image_size=32, patch=8),
    "thermal": dict(image_size=32, patch=8),
    "video": dict(num_frames=4, image_size=32, tubelet=(2, 8, 8)),
    "two_stream": dict(num_frames=4, image_size=32, tubelet=(2, 8, 8)),
    "audio": dict(clips=2),
    "imu": dict(length=256, kernel=8),
    "timeseries": dict(length=64, patch=8, max_channels=4),
    "speech_units": dict(max_frames=200, max_units=64),
}
MAKERS: dict[str, Maker] = {}


def maker(name: str) -> Callable[[Maker], Maker]:
    def wrap(fn: Maker) -> Maker:
        MAKERS[name] = fn
        return fn
    return wrap


def digit_like(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth grey-level blob pattern in [0, 1], deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size))
    for _ in range(4):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return img / img.max()


@maker("image")
def make_image(d: Path, seed: int = 0) -> Path:
    rgb = (np.stack([digit_like(64, seed + i) for i in range(3)], -1) * 255).astype(np.uint8)
    p = d / f"img{seed}.png"
    Image.fromarray(rgb).save(p)
    return p


@maker("text")
def make_text(d: Path, seed: int = 0) -> Path:
    p = d / f"caption{seed}.txt"
    p.write_text(["a handwritten seven", "the digit three", "a photo of a dog"][seed % 3] + "\n")
    return p


@maker("depth")
def make_depth(d: Path, seed: int = 0) -> Path:
    depth_mm = (500 + 1500 * digit_like(80, seed)).astype(np.uint16)
    p = d / f"scan{seed}.depth.png"
    Image.fromarray(depth_mm).save(p)
    return p


@maker("thermal")
def make_thermal(d: Path, seed: int = 0) -> Path:
    heat = (20000 + 20000 * digit_like(72, seed + 7)).astype(np.uint16)
    p = d / f"cam{seed}.thermal.png"
    Image.fromarray(heat).save(p)
    return p


@maker("imu")
def make_imu(d: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 10, 1000)
    sig = np.stack([np.sin(t * (k + 1)) + 0.1 * rng.standard_normal(t.size) for k in range(6)])
    p = d / f"wrist{seed}.imu.npy"
    np.save(p, sig.astype(np.float32))
    return p


@maker("timeseries")
def make_timeseries(d: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sig = np.cumsum(rng.standard_normal((300, 3)), axis=0)
    p = d / f"series{seed}.csv"
    np.savetxt(p, sig, delimiter=",", header="a,b,c", comments="")
    return p


def _gather() -> None:
    import importlib
    for mod in ("samplegen_video", "samplegen_audio"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


_gather()


def text_index(folder: Path, missing: int | None = None) -> Path:
    """``folder/idx``: an index of three text rows of dim 4 written with IndexWriter, no model involved
    (what the index commands that embed nothing read). ``missing``: the row whose file is deleted
    afterwards, for ``index rm --missing`` to find."""
    from binder.embed.shards import file_hash
    from binder.index.writer import IndexWriter

    rows = []
    for i in range(3):
        path = folder / f"note{i}.txt"
        path.write_text(f"note {i}")
        st = path.stat()
        rows.append({"path": str(path), "modality": "text", "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "mtime": st.st_mtime, "hash": file_hash(path), "shape": [1]})
    if missing is not None:
        (folder / f"note{missing}.txt").unlink()
    with IndexWriter(folder / "idx", dim=4) as writer:
        writer.append(np.eye(4, dtype=np.float32)[:3], rows)
        writer.flush()
    return folder / "idx"
