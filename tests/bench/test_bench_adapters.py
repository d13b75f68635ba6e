"""Each benchmark adapter reads its official layout into the right manifest, and names what is missing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_datasets import (
    EGO4D_ROWS,
    ESC50_ROWS,
    LLVIP_FRAMES,
    MSRVTT_ROWS,
    NYU_SCENES,
    make_ego4d,
    make_esc50,
    make_llvip,
    make_msrvtt,
    make_nyu,
)
from PIL import Image

from binder.errors import AnybindError
from recipes.bench import BENCHMARKS, DatasetLayoutError, get_benchmark
from recipes.bench import esc50 as esc50_mod
from recipes.bench.llvip import square_box
from recipes.bench.nyu_depth import CLASSES as NYU_CLASSES
from recipes.bench.nyu_depth import scene_class


def lines(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def test_registry_lists_the_five_benchmarks_with_their_paper_figures():
    figures = {name: b.paper.value for name, b in BENCHMARKS.items()}
    assert figures == {"esc50": 66.9, "nyu-depth-v2": 54.0, "llvip": 63.4, "ego4d-imu": 25.0, "msr-vtt": 36.8}
    assert {b.modality for b in BENCHMARKS.values()} == {"audio", "depth", "thermal", "imu", "video"}
    with pytest.raises(AnybindError, match="unknown benchmark 'imagenet'.*esc50"):
        get_benchmark("imagenet")


def test_esc50_manifest_has_every_fold_and_the_50_classes(tmp_path):
    built = BENCHMARKS["esc50"].build_manifest(make_esc50(tmp_path / "esc"), tmp_path / "work")
    rows = lines(built.manifest)
    assert built.count == len(rows) == len(ESC50_ROWS) and built.task == "zero_shot"
    assert [r["label"] for r in rows] == [t for _, _, t, _ in ESC50_ROWS]
    assert all(r["modality"] == "audio" and Path(r["path"]).is_file() for r in rows)
    assert len(built.classes) == 50 and built.classes[11] == "sea_waves" and built.prompt_names[11] == "sea waves"
    assert built.protocol["folds"] == [1, 2, 3, 4, 5] and "zero-shot" in built.protocol["folds_why"]


def test_esc50_folds_select_clips(tmp_path):
    built = esc50_mod.build_manifest(make_esc50(tmp_path / "esc"), tmp_path / "work", folds=(1, 5))
    assert [r["label"] for r in lines(built.manifest)] == [0, 11]


def test_nyu_manifest_maps_scene_types_to_the_ten_classes(tmp_path):
    built = BENCHMARKS["nyu-depth-v2"].build_manifest(make_nyu(tmp_path / "nyu"), tmp_path / "work")
    rows = lines(built.manifest)
    assert len(built.classes) == 10 and built.classes[-1] == "others"
    assert [NYU_CLASSES[r["label"]] for r in rows] == ["kitchen", "living room", "others"]
    assert [Path(r["path"]).name for r in rows] == [f"{i}.png" for i in NYU_SCENES]
    assert scene_class("home_office") == "home office" and scene_class("dinette") == "others"


def test_nyu_test_id_without_scene_file_is_left_out_not_fatal(tmp_path):
    root = make_nyu(tmp_path / "nyu")
    (root / "test" / "scene_class" / "0002.txt").unlink()
    built = BENCHMARKS["nyu-depth-v2"].build_manifest(root, tmp_path / "work")
    assert built.count == 2 and built.skipped[0][0].endswith("0002.txt")


def test_llvip_crops_people_and_equal_size_background(tmp_path):
    built = BENCHMARKS["llvip"].build_manifest(make_llvip(tmp_path / "llvip"), tmp_path / "work")
    rows = lines(built.manifest)
    people = [r for r in rows if r["label"] == 1]
    background = [r for r in rows if r["label"] == 0]
    assert built.classes == ("background", "person")
    assert len(people) == len(background) == 2  # the 5 px box is left out, reported
    assert len(built.skipped) == 1 and "under 8 px" in built.skipped[0][1]
    for person, bg in zip(people, background):
        p, b = Image.open(person["path"]), Image.open(bg["path"])
        assert p.mode == "L" and p.size == b.size and p.size[0] == p.size[1] == 60
        assert person["path"].endswith(".thermal.png")
    assert sum(len(v) for v in LLVIP_FRAMES.values()) == 3


def test_llvip_square_box_stays_inside_the_frame():
    assert square_box((10, 20, 40, 80), 160, 128) == (0, 20, 60, 80)  # widened to 60, shifted in at the left
    assert square_box((150, 0, 160, 100), 160, 128) == (60, 0, 160, 100)  # and at the right
    assert square_box((0, 0, 300, 100), 160, 128) == (16, 0, 144, 128)  # no larger than the frame


def test_llvip_unreadable_annotation_skips_its_frame(tmp_path):
    root = make_llvip(tmp_path / "llvip")
    (root / "Annotations" / "010002.xml").write_text("<annotation><object>")
    built = BENCHMARKS["llvip"].build_manifest(root, tmp_path / "work")
    assert built.count == 2 and any("010002.xml" in p and "VOC" in r for p, r in built.skipped)


def test_ego4d_classes_come_from_labels_or_scenarios_txt(tmp_path):
    built = BENCHMARKS["ego4d-imu"].build_manifest(make_ego4d(tmp_path / "a"), tmp_path / "wa")
    assert built.classes == ("Carpenter", "Cooking")
    assert [r["label"] for r in lines(built.manifest)] == [1, 0, 1]
    listed = ["Cooking", "Carpenter", "Gardening"]
    built = BENCHMARKS["ego4d-imu"].build_manifest(make_ego4d(tmp_path / "b", listed), tmp_path / "wb")
    assert built.classes == tuple(listed) and [r["label"] for r in lines(built.manifest)] == [0, 1, 0]
    assert len(EGO4D_ROWS) == built.count


def test_ego4d_scenario_missing_from_the_list_names_the_list(tmp_path):
    root = make_ego4d(tmp_path / "a", ["Cooking"])
    with pytest.raises(DatasetLayoutError, match=r"scenarios\.txt: does not list scenario 'Carpenter'"):
        BENCHMARKS["ego4d-imu"].build_manifest(root, tmp_path / "w")


def test_msrvtt_manifest_pairs_each_sentence_with_its_video(tmp_path):
    built = BENCHMARKS["msr-vtt"].build_manifest(make_msrvtt(tmp_path / "m", csv_in_subfolder=False), tmp_path / "w")
    rows = lines(built.manifest)
    assert built.task == "text_retrieval" and built.count == 3
    assert [(Path(r["path"]).name, r["text"]) for r in rows] == [(f"{v}.mp4", s) for _, _, v, s in MSRVTT_ROWS]


@pytest.mark.parametrize("name, make, remove, named", [
    ("esc50", make_esc50, "meta/esc50.csv", "meta/esc50.csv: missing file"),
    ("esc50", make_esc50, "audio", "audio: missing folder"),
    ("nyu-depth-v2", make_nyu, "test.txt", "test.txt: missing file"),
    ("nyu-depth-v2", make_nyu, "test/depth", "test/depth: missing folder"),
    ("llvip", make_llvip, "Annotations", "Annotations: missing folder"),
    ("llvip", make_llvip, "infrared/test", "infrared/test: missing folder"),
    ("ego4d-imu", make_ego4d, "labels.csv", "labels.csv: missing file"),
    ("msr-vtt", make_msrvtt, "msrvtt_data/MSRVTT_JSFUSION_test.csv", "MSRVTT_JSFUSION_test.csv: missing file"),
    ("msr-vtt", make_msrvtt, "videos/all", "videos/all: missing folder"),
])
def test_layout_error_names_the_missing_file(tmp_path, name, make, remove, named):
    import shutil

    root = make(tmp_path / "data")
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError) as err:
        BENCHMARKS[name].build_manifest(root, tmp_path / "work")
    assert named in str(err.value) and str(root) in str(err.value)


def test_missing_csv_column_is_named(tmp_path):
    root = make_esc50(tmp_path / "esc")
    table = root / "meta" / "esc50.csv"
    table.write_text(table.read_text().replace("category", "kind", 1))
    with pytest.raises(DatasetLayoutError, match=r"esc50\.csv: missing column\(s\) category"):
        BENCHMARKS["esc50"].build_manifest(root, tmp_path / "work")


def test_esc50_wrong_category_for_target_is_refused(tmp_path):
    root = make_esc50(tmp_path / "esc")
    table = root / "meta" / "esc50.csv"
    table.write_text(table.read_text().replace(",0,dog,", ",0,cat,"))
    with pytest.raises(DatasetLayoutError, match="line 2: target 0 is not category 'cat'"):
        BENCHMARKS["esc50"].build_manifest(root, tmp_path / "work")
