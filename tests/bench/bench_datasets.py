"""Tiny data sets in each benchmark's official layout, written by the tests (a few synthetic files each)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from samplegen import digit_like
from samplegen_audio import chirp, write_wav
from samplegen_video import moving_blob, write_video

ESC50_ROWS = [  # filename, fold, target, category
    ("1-100032-A-0.wav", 1, 0, "dog"),
    ("2-101296-A-10.wav", 2, 10, "rain"),
    ("3-102908-A-40.wav", 3, 40, "helicopter"),
    ("5-103415-A-11.wav", 5, 11, "sea_waves"),
]


def make_esc50(root: Path, corrupt: str | None = None) -> Path:
    """audio/*.wav + meta/esc50.csv; ``corrupt`` names an extra listed clip whose file is not audio."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = list(ESC50_ROWS)
    for i, (name, *_rest) in enumerate(rows):
        write_wav(root / "audio" / name, chirp(1.0, 16000, f0=200.0 + 300 * i, seed=i), 16000)
    if corrupt:
        (root / "audio" / corrupt).write_bytes(b"RIFF but not really a wave file")
        rows.append((corrupt, 4, 1, "rooster"))
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for name, fold, target, category in rows:
            w.writerow([name, fold, target, category, "False", name.split("-")[1], "A"])
    return root


NYU_SCENES = {"0001": "kitchen", "0002": "living_room", "0009": "basement"}  # basement → others


def make_nyu(root: Path) -> Path:
    """test.txt + test/depth/<id>.png (uint16 mm) + test/scene_class/<id>.txt, nicr-scene-analysis layout."""
    (root / "test" / "depth").mkdir(parents=True)
    (root / "test" / "scene_class").mkdir()
    (root / "test.txt").write_text("\n".join(NYU_SCENES) + "\n")
    for i, (image_id, scene) in enumerate(NYU_SCENES.items()):
        depth_mm = (500 + 2500 * digit_like(48, i)).astype(np.uint16)
        Image.fromarray(depth_mm).save(root / "test" / "depth" / f"{image_id}.png")
        (root / "test" / "scene_class" / f"{image_id}.txt").write_text(scene)
    return root


LLVIP_FRAMES = {  # name: person boxes (xmin, ymin, xmax, ymax); the 5 px box is too small to crop
    "010001": [(10, 20, 40, 80), (150, 10, 155, 15)],
    "010002": [(100, 30, 130, 90)],
}


def make_llvip(root: Path) -> Path:
    """infrared/test/<name>.jpg (grey frames stored as RGB JPEGs, like LLVIP's) + Annotations/<name>.xml."""
    (root / "infrared" / "test").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i, (name, boxes) in enumerate(LLVIP_FRAMES.items()):
        grey = (40 + 150 * digit_like(160, i))[:128].astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, -1)).save(root / "infrared" / "test" / f"{name}.jpg")
        objects = "".join(f"<object><name>person</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                          f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>160</width><height>128</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    return root


EGO4D_ROWS = [("clip_a.npy", "Cooking"), ("clip_b.npy", "Carpenter"), ("clip_c.npy", "Cooking")]


def make_ego4d(root: Path, scenarios: list[str] | None = None) -> Path:
    """imu/<clip>.npy windows (6, 400) + labels.csv (file,scenario) + optional scenarios.txt."""
    (root / "imu").mkdir(parents=True)
    t = np.linspace(0, 5, 400)
    for i, (name, _) in enumerate(EGO4D_ROWS):
        np.save(root / "imu" / name, np.stack([np.sin(t * (k + 1 + i)) for k in range(6)]).astype(np.float32))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "scenario", "narration"])
        for name, scenario in EGO4D_ROWS:
            w.writerow([name, scenario, "#C C does something"])
    if scenarios is not None:
        (root / "scenarios.txt").write_text("\n".join(scenarios) + "\n")
    return root


MSRVTT_ROWS = [("ret0", "msr7010", "video7010", "a ball rolls to the right"),
               ("ret1", "msr7011", "video7011", "an orange blob moves slowly"),
               ("ret2", "msr7012", "video7012", "a bright spot drifts across the screen")]


def make_msrvtt(root: Path, csv_in_subfolder: bool = True) -> Path:
    """videos/all/<video_id>.mp4 + msrvtt_data/MSRVTT_JSFUSION_test.csv (key,vid_key,video_id,sentence)."""
    (root / "videos" / "all").mkdir(parents=True)
    for i, (_, _, video_id, _) in enumerate(MSRVTT_ROWS):
        write_video(root / "videos" / "all" / f"{video_id}.mp4", moving_blob(num_frames=8, step=2.0 + 2 * i))
    table = root / "msrvtt_data" if csv_in_subfolder else root
    table.mkdir(exist_ok=True)
    with open(table / "MSRVTT_JSFUSION_test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerows(MSRVTT_ROWS)
    return root


MAKERS = {"esc50": make_esc50, "nyu-depth-v2": make_nyu, "llvip": make_llvip, "ego4d-imu": make_ego4d,
          "msr-vtt": make_msrvtt}
