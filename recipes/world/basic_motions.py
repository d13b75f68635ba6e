"""BasicMotions: the real smartwatch accelerometer + gyroscope recordings shipped inside aeon.

Four activities (standing, walking, running, badminton), 10 s at 10 Hz, six channels (acc xyz,
gyro xyz), with the official 40 train / 40 test cases. Read with aeon's loader (the .ts files in
``aeon/datasets/data/BasicMotions``, no download) and saved unchanged as float32 (6, 100)
``basic_motions/{split}/{i}.imu.npy``. The rows have no paired image (``"image": null``): they
measure IMU zero-shot classification against text captions of the activities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from binder.errors import AnybindError
from recipes.world.common import progress_bar, relpath, save_npy

ACTIVITY_CAPTIONS = {
    "standing": "a person standing still",
    "walking": "a person walking",
    "running": "a person running",
    "badminton": "a person playing badminton",
}
BASIC_MOTIONS_SPLITS = ("train", "test")
AEON_HINT = "aeon is not installed: pip install 'anybind[world]' (BasicMotions ships inside aeon)"


def load_basic_motions(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(cases, 6, 100) float32 and (cases,) activity names of one official split."""
    try:
        from aeon.datasets import load_basic_motions as aeon_load
    except ImportError:
        raise AnybindError(AEON_HINT) from None
    x, y = aeon_load(split=split)
    return np.asarray(x, dtype=np.float32), np.asarray(y).astype(str)


def write_basic_motions(folder: Path, progress: bool = True) -> dict[str, list[dict]]:
    """Every case of both official splits as an .imu.npy; manifest rows by split."""
    rows: dict[str, list[dict]] = {}
    for split in BASIC_MOTIONS_SPLITS:
        x, y = load_basic_motions(split)
        rows[split] = []
        with progress_bar(len(x), f"basic_motions {split}", progress) as bar:
            for i, (case, label) in enumerate(zip(x, y)):
                path = folder / "basic_motions" / split / f"{i}.imu.npy"
                save_npy(path, np.ascontiguousarray(case))
                rows[split].append({"modality": "imu", "path": relpath(path, folder), "image": None,
                                    "label": str(label), "text": ACTIVITY_CAPTIONS.get(str(label), f"a person {label}"),
                                    "split": split})
                bar.update()
    return rows
