"""benchmarks/hard_conditions.py: a hard figure split by the held-out conditions each row carries."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from recipes.world.common import condition_names

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from hard_conditions import split_by_condition, table  # noqa: E402


@pytest.mark.parametrize("label, names", [
    ("clean", ["clean"]),
    ("gain-20dB", ["gain"]),
    ("pad-1.2s-0.4s+gain+3dB", ["pad", "gain"]),  # a "+" before a digit signs the value
    ("noise-bursts-16dB+gain+3dB", ["noise", "gain"]),
    ("gain-0.55-offset+3168+blur-41s-defocus1.2px", ["gain", "blur"]),
    ("noise-0.25+offset-start-302ms", ["noise", "offset"]),
])
def test_condition_names_split_only_between_labels(label, names):
    assert condition_names(label) == names


def test_every_world_hard_label_names_known_conditions():
    """The world's own hard labels (the builders' HARD_CONDITIONS and speech's) parse to those names."""
    from recipes.world import depth, thermal

    assert condition_names("tilt-38deg+holes-9pct+shift-dx-2-dy3") == ["tilt", "holes", "shift"]
    assert set(condition_names("+".join(f"{c}-1" for c in depth.HARD_CONDITIONS))) == set(depth.HARD_CONDITIONS)
    assert set(condition_names("+".join(f"{c}-1" for c in thermal.HARD_CONDITIONS))) == set(thermal.HARD_CONDITIONS)


def test_split_by_condition_counts_alone_and_with_others():
    groups = {"clean": {"items": 4, "zero_shot_top1": 1.0},
              "gain-20dB": {"items": 2, "zero_shot_top1": 0.5},
              "pad-1s-1s+gain+3dB": {"items": 4, "zero_shot_top1": 0.25},
              "pad-2s-0s": {"items": 2, "zero_shot_top1": 0.0}}
    out = split_by_condition(groups)
    assert out["count"] == {"1": {"items": 8, "top1": 0.625}, "2": {"items": 4, "top1": 0.25}}
    assert out["only"] == {"clean": {"items": 4, "top1": 1.0}, "gain": {"items": 2, "top1": 0.5},
                           "pad": {"items": 2, "top1": 0.0}}
    assert out["with"]["gain"] == {"items": 6, "top1": pytest.approx(2 / 6)}
    assert out["with"]["pad"] == {"items": 6, "top1": pytest.approx(1 / 6)}
    text = table({"audio": {"clean": 0.9, "hard": 0.5, **out}})
    assert "| audio | 0.900 | 0.500 | 0.625 (8) | 0.250 (4) | – |" in text and "gain 0.50 (2)" in text


def test_the_results_file_matches_the_emergence_table():
    """Its figures were read from the bindings of the run the emergence table reports."""
    path = ROOT / "benchmarks" / "results" / "hard_conditions.json"
    rows = json.loads((ROOT / "benchmarks" / "results" / "emergence.json").read_text())["rows"]
    for name, r in json.loads(path.read_text()).items():
        assert (r["clean"], r["hard"], r["run"]) == (rows[name]["emergent_top1"], rows[name]["emergent_hard_top1"],
                                                     rows[name]["run"])
        assert sum(c["items"] for c in r["count"].values()) == r["hard_items"] == rows[name]["hard_items"]
        total = sum(c["items"] * c["top1"] for c in r["count"].values()) / r["hard_items"]
        assert total == pytest.approx(r["hard"], abs=1e-9)


def test_the_world_guide_shows_the_results_file():
    results = json.loads((ROOT / "benchmarks" / "results" / "hard_conditions.json").read_text())
    assert table(results) in (ROOT / "docs" / "guides" / "world.md").read_text()
