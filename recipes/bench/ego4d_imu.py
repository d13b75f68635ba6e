"""Ego4D IMU: zero-shot scenario classification of head-mounted IMU windows, ImageBind's IMU measure.

Ego4D ships IMU as one CSV stream per video and no windowed evaluation set, so this benchmark takes
an Ego4D-style set of windows you cut yourself::

    DIR/imu/<clip>.npy               one window, (6, T) or (T, 6) float: accelerometer x, y, z (m/s²)
                                     then gyroscope x, y, z (rad/s); .csv windows work too
    DIR/labels.csv                   columns file,scenario (file relative to DIR/imu/)
    DIR/scenarios.txt (optional)     the class list, one scenario per line; without it the
                                     classes are the sorted scenarios labels.csv names

Ego4D's own IMU CSVs hold gyroscope before accelerometer (gyro_x..z, accl_x..z): reorder when
cutting windows. ImageBind reads 5 s at 200 Hz (2,000 samples, resampled here whatever T is).
The metric is top-1 over the scenarios; the prompt templates are our own wording.
"""
from __future__ import annotations

from pathlib import Path

from recipes.bench.base import (
    Benchmark,
    BuiltSet,
    DatasetLayoutError,
    PaperFigure,
    read_csv_rows,
    read_lines,
    require_dir,
    require_file,
    write_manifest,
)

TEMPLATES = ("{}.", "egocentric footage of {}.", "the camera wearer is {}.", "a first-person recording: {}.")
LAYOUT = "DIR/imu/*.npy windows (acc xyz, gyro xyz), DIR/labels.csv (file,scenario), optional DIR/scenarios.txt"


def read_classes(data_dir: Path, rows: list[dict[str, str]]) -> tuple[str, ...]:
    """The scenario list: DIR/scenarios.txt when present, else the sorted scenarios of the label rows."""
    listed = data_dir / "scenarios.txt"
    if listed.is_file():
        names = tuple(dict.fromkeys(read_lines(listed)))
        if not names:
            raise DatasetLayoutError(listed, "lists no scenario")
        return names
    return tuple(sorted({r["scenario"] for r in rows if r["scenario"]}))


def build_manifest(data_dir: Path, out_dir: Path, progress: bool = False) -> BuiltSet:
    """One IMU record per labelled window; a row whose scenario is empty is skipped."""
    imu_dir = require_dir(data_dir / "imu", "the IMU windows, imu/<clip>.npy")
    labels = require_file(data_dir / "labels.csv", "columns file,scenario")
    rows = read_csv_rows(labels, ("file", "scenario"))
    classes = read_classes(data_dir, rows)
    index = {name: i for i, name in enumerate(classes)}
    records, skipped = [], []
    for line, row in enumerate(rows, 2):
        if not row["file"] or not row["scenario"]:
            skipped.append((f"{labels}:{line}", "empty file or scenario"))
            continue
        if row["scenario"] not in index:
            raise DatasetLayoutError(data_dir / "scenarios.txt",
                                     f"does not list scenario {row['scenario']!r} of {labels.name} line {line}")
        records.append({"modality": "imu", "path": str((imu_dir / row["file"]).resolve()),
                        "label": index[row["scenario"]]})
    if not records:
        raise DatasetLayoutError(labels, "labels no window")
    count = write_manifest(out_dir / "ego4d-imu.jsonl", records)
    return BuiltSet(out_dir / "ego4d-imu.jsonl", "zero_shot", count, classes, classes, TEMPLATES,
                    protocol={"classes": f"{len(classes)} scenarios (ImageBind: Ego4D's scenario labels)",
                              "templates": "anybind's wording; ImageBind does not publish its own"},
                    skipped=skipped)


BENCHMARK = Benchmark(
    name="ego4d-imu", title="Ego4D IMU", modality="imu", metric="zero-shot top-1 (%)", layout=LAYOUT,
    paper=PaperFigure(25.0, "ImageBind-Huge", "ImageBind README, emergent zero-shot classification table "
                                               "(github.com/facebookresearch/ImageBind)",
                      note="ImageBind's own Ego4D windows and scenario list are not released; a figure on "
                           "another cut of Ego4D is comparable only roughly"),
    builder=build_manifest,
)
