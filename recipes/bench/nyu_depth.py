"""NYU-Depth-v2: zero-shot scene classification from depth maps alone, as ImageBind and Omnivore do.

Layout: the official labelled set (``nyu_depth_v2_labeled.mat`` with the standard 795/654 split
``splits.mat``) as the commonly used preprocessing of nicr-scene-analysis-datasets writes it
(``python -m nicr_scene_analysis_datasets.datasets.nyuv2.prepare_dataset DIR``; the source
LanguageBind names for its NYU-D evaluation)::

    DIR/test.txt                      the 654 test ids, one 4-digit id per line
    DIR/test/depth/<id>.png           16-bit PNG, depth in millimetres (the in-painted ``depths``)
    DIR/test/scene_class/<id>.txt     the NYU scene type of the image, e.g. ``living_room``

Classes: the 10-class setting ImageBind and Omnivore use, the nine most frequent NYU scene types
and ``others`` for every other scene type (bathroom, bedroom, bookstore, classroom, dining room,
home office, kitchen, living room, office, others). Depth maps go to the depth modality (depth in
mm → disparity). The prompt templates are our own wording.
"""
from __future__ import annotations

from pathlib import Path

from recipes.bench.base import (
    Benchmark,
    BuiltSet,
    DatasetLayoutError,
    PaperFigure,
    pretty,
    read_lines,
    require_dir,
    require_file,
    write_manifest,
)

CLASSES = ("bathroom", "bedroom", "bookstore", "classroom", "dining room", "home office", "kitchen",
           "living room", "office", "others")
PROMPT_NAMES = CLASSES[:-1] + ("other room",)
TEMPLATES = ("a depth photo of the {}.", "a depth map of the {}.", "a depth image of a room: {}.",
             "the {}, seen by a depth camera.")
LAYOUT = "DIR/test.txt, DIR/test/depth/<id>.png (16-bit, mm), DIR/test/scene_class/<id>.txt"
MAX_LABEL_BYTES = 4096


def scene_class(scene_type: str) -> str:
    """The 10-class label of a raw NYU scene type (``living_room`` → ``living room``; rare types → ``others``)."""
    name = pretty(scene_type).lower()
    return name if name in CLASSES[:-1] else "others"


def build_manifest(data_dir: Path, out_dir: Path, progress: bool = False) -> BuiltSet:
    """One depth record per test id, labelled with its 10-class scene; an id without a scene file is skipped."""
    ids_file = require_file(data_dir / "test.txt", "the test split, one image id per line")
    depth_dir = require_dir(data_dir / "test" / "depth", "16-bit depth PNGs in mm, <id>.png")
    scene_dir = require_dir(data_dir / "test" / "scene_class", "scene types, <id>.txt")
    ids = read_lines(ids_file)
    if not ids:
        raise DatasetLayoutError(ids_file, "lists no test ids")
    records, skipped = [], []
    for image_id in ids:
        label_file = scene_dir / f"{image_id}.txt"
        scene = _read_scene(label_file)
        if isinstance(scene, tuple):
            skipped.append(scene)
            continue
        records.append({"modality": "depth", "path": str((depth_dir / f"{image_id}.png").resolve()),
                        "label": CLASSES.index(scene_class(scene)), "text": scene})
    if not records:
        raise DatasetLayoutError(scene_dir, f"no readable scene file for any of the {len(ids)} test ids")
    count = write_manifest(out_dir / "nyu-depth-v2.jsonl", records)
    return BuiltSet(out_dir / "nyu-depth-v2.jsonl", "zero_shot", count, CLASSES, PROMPT_NAMES, TEMPLATES,
                    protocol={"split": "test (654 images of the standard 795/654 split)",
                              "classes": "nine most frequent NYU scene types + others",
                              "depth": "test/depth (in-painted depth, mm) → disparity",
                              "templates": "anybind's wording; ImageBind does not publish its own"},
                    skipped=skipped)


def _read_scene(path: Path) -> str | tuple[str, str]:
    """The scene type in ``path``, or (path, reason) when it cannot be read."""
    if not path.is_file():
        return str(path), "no scene_class file for this test id"
    if path.stat().st_size > MAX_LABEL_BYTES:
        return str(path), f"scene file larger than {MAX_LABEL_BYTES} bytes"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return str(path), "scene file is not UTF-8 text"
    return text if text else (str(path), "scene file is empty")


BENCHMARK = Benchmark(
    name="nyu-depth-v2", title="NYU-Depth-v2", modality="depth", metric="zero-shot top-1 (%)", layout=LAYOUT,
    paper=PaperFigure(54.0, "ImageBind-Huge", "ImageBind README, emergent zero-shot classification table "
                                               "(github.com/facebookresearch/ImageBind)"),
    builder=build_manifest,
)
