"""benchmarks/emergence.py's results file without training: which run measured each figure."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from emergence import combine  # noqa: E402


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
