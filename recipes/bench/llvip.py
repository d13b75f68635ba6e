"""LLVIP: zero-shot person vs background classification of infrared crops, as ImageBind evaluates it.

Layout (the official release, bupt-ai-cz.github.io/LLVIP)::

    DIR/infrared/test/<name>.jpg      the 3,463 infrared test frames (1280 × 1024)
    DIR/Annotations/<name>.xml        Pascal VOC boxes; objects named ``person``

Protocol (ImageBind describes the task, not its crop rule; this rule is ours): every person box of
a test frame becomes a ``person`` crop, and for each person box one ``background`` crop of the
same size is drawn at random (seeded by the frame name) where it touches no person box; a frame
with no room for it gets fewer background crops. Crops are squared around the box (the short side
widened to the long one, clipped to the frame) so the thermal modality's center crop keeps the
whole person, converted to 8-bit grey and written to WORK/crops/. Boxes under 8 px are left out.
The prompt templates are our own wording.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from binder.errors import ModalityError
from recipes.bench.base import Benchmark, BuiltSet, DatasetLayoutError, PaperFigure, require_dir, write_manifest

if TYPE_CHECKING:  # numpy, PIL and tqdm are imported where used: `anybind --help` lists this benchmark
    import numpy as np
    from PIL import Image

CLASSES = ("background", "person")
TEMPLATES = ("a thermal photo of a {}.", "an infrared photo of a {}.", "a thermal image of the {}.",
             "a heat camera picture of a {}.")
LAYOUT = "DIR/infrared/test/*.jpg and DIR/Annotations/*.xml (Pascal VOC person boxes)"
MIN_SIDE = 8
MAX_XML_BYTES = 1_000_000
MAX_PIXELS = 64_000_000
TRIES = 50

Box = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)


def person_boxes(xml_path: Path) -> list[Box]:
    """The ``person`` boxes of a VOC annotation file; a ModalityError names the file when it is unreadable."""
    if not xml_path.is_file():
        raise ModalityError(xml_path, "no annotation file for this frame")
    if xml_path.stat().st_size > MAX_XML_BYTES:
        raise ModalityError(xml_path, f"annotation larger than {MAX_XML_BYTES} bytes")
    try:
        root = ET.parse(xml_path).getroot()
        boxes = []
        for obj in root.iter("object"):
            if (obj.findtext("name") or "").strip().lower() != "person":
                continue
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError("an object without <bndbox>")
            x0, y0, x1, y1 = (int(float(bb.findtext(k) or "nan")) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((x0, y0, x1, y1))
    except (ET.ParseError, ValueError, OverflowError) as exc:
        raise ModalityError(xml_path, f"not a readable VOC annotation ({exc})") from None
    return boxes


def square_box(box: Box, width: int, height: int) -> Box:
    """``box`` widened to a square on its short side, centred, then clipped to the frame."""
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])
    side = min(max(x1 - x0, y1 - y0), width, height)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    left = min(max(0, cx - side // 2), width - side)
    top = min(max(0, cy - side // 2), height - side)
    return left, top, left + side, top + side


def overlaps(a: Box, b: Box) -> bool:
    """True when two boxes share any pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def background_box(side: int, persons: list[Box], width: int, height: int, rng: np.random.Generator) -> Box | None:
    """A random ``side``-sized square touching no person box, or None after ``TRIES`` draws."""
    if side > width or side > height:
        return None
    for _ in range(TRIES):
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        box = (left, top, left + side, top + side)
        if not any(overlaps(box, p) for p in persons):
            return box
    return None


def frame_crops(image_path: Path, xml_path: Path, out_dir: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Write one frame's person and background crops; returns their records and what was left out."""
    import numpy as np

    from modalities.common import open_image  # the bounded image reader (importing modalities is slow)

    persons = person_boxes(xml_path)
    with open_image(image_path, MAX_PIXELS) as im:
        grey = im.convert("L")
    width, height = grey.size
    rng = np.random.default_rng(zlib.crc32(image_path.name.encode()))
    records: list[dict] = []
    skipped: list[tuple[str, str]] = []
    for k, box in enumerate(persons):
        sq = square_box(box, width, height)
        side = sq[2] - sq[0]
        if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE or side < MIN_SIDE:
            skipped.append((f"{xml_path}#person{k}", f"person box {box} is under {MIN_SIDE} px"))
            continue
        records.append(_save(grey, sq, out_dir / "person" / f"{image_path.stem}_{k}.thermal.png", 1))
        bg = background_box(side, persons, width, height, rng)
        if bg is None:
            skipped.append((f"{image_path}#background{k}", f"no {side}px square free of people"))
        else:
            records.append(_save(grey, bg, out_dir / "background" / f"{image_path.stem}_{k}.thermal.png", 0))
    return records, skipped


def _save(grey: Image.Image, box: Box, path: Path, label: int) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    grey.crop(box).save(path)
    return {"modality": "thermal", "path": str(path.resolve()), "label": label}


def build_manifest(data_dir: Path, out_dir: Path, progress: bool = False) -> BuiltSet:
    """Crop every annotated test frame into person and background crops; unreadable frames are skipped."""
    from tqdm import tqdm

    frames_dir = require_dir(data_dir / "infrared" / "test", "the infrared test frames, *.jpg")
    notes_dir = require_dir(data_dir / "Annotations", "Pascal VOC annotations, <name>.xml")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise DatasetLayoutError(frames_dir, "holds no .jpg frames")
    records, skipped = [], []
    for frame in tqdm(frames, disable=not progress, desc="llvip crops", unit="frame"):
        try:
            recs, left_out = frame_crops(frame, notes_dir / f"{frame.stem}.xml", out_dir / "crops")
        except ModalityError as exc:
            skipped.append((str(exc.path), exc.reason))
            continue
        records += recs
        skipped += left_out
    if not records:
        raise DatasetLayoutError(notes_dir, f"no person box could be cropped from the {len(frames)} test frames")
    count = write_manifest(out_dir / "llvip.jsonl", records)
    return BuiltSet(out_dir / "llvip.jsonl", "zero_shot", count, CLASSES, CLASSES, TEMPLATES,
                    protocol={"split": "infrared/test", "crops": "person boxes + one equal-size background "
                              "square per box, squared and clipped to the frame (anybind's rule)",
                              "templates": "anybind's wording; ImageBind does not publish its own"},
                    skipped=skipped)


BENCHMARK = Benchmark(
    name="llvip", title="LLVIP", modality="thermal", metric="zero-shot top-1 (%)", layout=LAYOUT,
    paper=PaperFigure(63.4, "ImageBind-Huge", "ImageBind README, emergent zero-shot classification table "
                                               "(github.com/facebookresearch/ImageBind)"),
    builder=build_manifest,
)
