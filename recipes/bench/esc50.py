"""ESC-50: zero-shot environmental sound classification over its 50 categories.

Layout (the official repository, github.com/karolpiczak/ESC-50, as cloned or unzipped)::

    DIR/audio/<filename>.wav        2,000 five-second clips, 44.1 kHz mono
    DIR/meta/esc50.csv              filename,fold,target,category,esc10,src_file,take

Protocol: every clip of the chosen folds is classified by its nearest class prompt; the default
is all five folds. Zero-shot classification trains on nothing, so the cross-validation folds,
which only matter for supervised and few-shot protocols, are all test data; re-evaluations of
ImageBind do the same (MTEB's ESC50_Zeroshot scores all 2,000 clips: 66.4 against the paper's
66.9). Class names are ESC-50's, indexed by ``target``; the prompt templates are our own wording
(ImageBind does not publish the ones it used).
"""
from __future__ import annotations

from pathlib import Path

from recipes.bench.base import (
    Benchmark,
    BuiltSet,
    DatasetLayoutError,
    PaperFigure,
    pretty,
    read_csv_rows,
    require_dir,
    require_file,
    write_manifest,
)

CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
)
TEMPLATES = ("a sound of {}.", "the sound of {}.", "an audio recording of {}.", "{} can be heard.")
FOLDS = (1, 2, 3, 4, 5)
COLUMNS = ("filename", "fold", "target", "category")
LAYOUT = "DIR/audio/*.wav and DIR/meta/esc50.csv (filename,fold,target,category,...)"
FOLDS_WHY = ("zero-shot classification trains on nothing, so all five cross-validation folds are test "
             "data (the folds only matter for supervised and few-shot protocols)")


def build_manifest(data_dir: Path, out_dir: Path, progress: bool = False,
                   folds: tuple[int, ...] = FOLDS) -> BuiltSet:
    """One audio record per clip of ``folds``, labelled by its ``target`` (the class index)."""
    audio = require_dir(data_dir / "audio", "the ESC-50 clips, audio/*.wav")
    meta = require_file(data_dir / "meta" / "esc50.csv", "the ESC-50 label table")
    records = []
    for line, row in enumerate(read_csv_rows(meta, COLUMNS), 2):
        target, fold = _int(meta, line, row, "target"), _int(meta, line, row, "fold")
        if not 0 <= target < len(CATEGORIES) or row["category"] != CATEGORIES[target]:
            raise DatasetLayoutError(meta, f"line {line}: target {target} is not category {row['category']!r} "
                                           "of ESC-50 (is this the official esc50.csv?)")
        if fold in folds:
            records.append({"modality": "audio", "path": str((audio / row["filename"]).resolve()), "label": target})
    if not records:
        raise DatasetLayoutError(meta, f"no clips in folds {list(folds)}")
    count = write_manifest(out_dir / "esc50.jsonl", records)
    return BuiltSet(out_dir / "esc50.jsonl", "zero_shot", count, CATEGORIES,
                    tuple(pretty(c) for c in CATEGORIES), TEMPLATES,
                    protocol={"folds": sorted(folds), "folds_why": FOLDS_WHY,
                              "templates": "anybind's wording; ImageBind does not publish its own"})


def _int(meta: Path, line: int, row: dict[str, str], column: str) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise DatasetLayoutError(meta, f"line {line}: column {column} is {row[column]!r}, not an integer") from None


BENCHMARK = Benchmark(
    name="esc50", title="ESC-50", modality="audio", metric="zero-shot top-1 (%)", layout=LAYOUT,
    paper=PaperFigure(66.9, "ImageBind-Huge", "ImageBind README, emergent zero-shot classification table "
                                               "(github.com/facebookresearch/ImageBind)"),
    builder=build_manifest,
)
