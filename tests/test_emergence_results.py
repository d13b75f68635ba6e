"""benchmarks/emergence.py's results file without training: which run measured each figure."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from emergence import combine, same_anchor  # noqa: E402


def run(started: str, *modalities: str, bm: bool = False) -> dict:
    return {"started": started, "modalities": list(modalities), "basic_motions": bm, "threads": 2, "minutes": 1.0}


def test_a_partial_rerun_keeps_the_other_rows_and_names_the_run_of_each():
    whole = combine({"rows": {}}, {"video": {"modality": "video", "emergent_top1": 0.7},
                                   "audio": {"modality": "audio", "emergent_top1": 0.8}},
                    {"rocket_top1": 1.0}, run("t1", "audio", "video", bm=True))
    assert list(whole["rows"]) == ["audio", "video"]  # MODALITIES order, not the order run
    assert {r["run"] for r in whole["rows"].values()} == {"t1"} and whole["basic_motions"]["run"] == "t1"
    again = combine(whole, {"video": {"modality": "video", "emergent_top1": 0.75}}, None, run("t2", "video"))
    assert again["rows"]["video"] == {"modality": "video", "emergent_top1": 0.75, "run": "t2"}
    assert again["rows"]["audio"]["run"] == "t1" and again["basic_motions"]["run"] == "t1"
    assert set(again["runs"]) == {"t1", "t2"} and again["run"]["started"] == "t2"
    last = combine(again, {"audio": {"modality": "audio"}}, {"rocket_top1": 1.0}, run("t3", "audio", bm=True))
    assert set(last["runs"]) == {"t2", "t3"}  # t1 no longer owns a figure


def test_figures_measured_through_another_anchor_are_left_out():
    first = combine({"rows": {}}, {"audio": {"modality": "audio"}, "video": {"modality": "video"}},
                    {"rocket_top1": 1.0}, {**run("t1", "audio", "video", bm=True), "anchor": {"weights_sha256": "a"}})
    same, dropped = same_anchor(first, {"weights_sha256": "a"})
    assert same == first and dropped == []
    other, dropped = same_anchor(first, {"weights_sha256": "b"})
    assert other["rows"] == {} and "basic_motions" not in other and dropped == ["audio", "video", "basic_motions"]
    unrecorded = combine({"rows": {}}, {"imu": {"modality": "imu"}}, {}, run("t0", "imu", bm=True))  # no anchor
    assert same_anchor(unrecorded, {"weights_sha256": "a"})[1] == ["imu", "basic_motions"]
    mixed = combine(first, {"audio": {"modality": "audio"}}, None,
                    {**run("t2", "audio"), "anchor": {"weights_sha256": "b"}})
    kept, dropped = same_anchor(mixed, {"weights_sha256": "b"})
    assert list(kept["rows"]) == ["audio"] and dropped == ["video", "basic_motions"]
