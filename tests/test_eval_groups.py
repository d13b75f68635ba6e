"""Per-group figures of ``anybind eval --group``: a mean over mixed conditions split by a manifest column."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from samplegen_audio import write_wav

from binder.cli import app
from binder.errors import ConfigError
from binder.model import BindingModel
from binder.train.data import read_pairs
from binder.train.evaluate import by_group, evaluate_manifest

SR = 16000


def test_by_group_reports_each_value_with_its_count():
    hits = {"zero_shot_top1": np.array([True, False, True, True, False]), "R@1": np.array([1, 1, 0, 0, 1], bool)}
    out = by_group(["a", "a", "b", None, 3], hits)
    assert list(out) == ["(none)", "3", "a", "b"]
    assert out["a"] == {"items": 2, "zero_shot_top1": 0.5, "R@1": 1.0}
    assert out["b"] == {"items": 1, "zero_shot_top1": 1.0, "R@1": 0.0}
    assert out["(none)"]["items"] == 1 and out["3"]["zero_shot_top1"] == 0.0


def test_manifest_columns_ride_along_but_do_not_change_record_equality(tmp_path):
    row = {"modality": "audio", "path": "a.wav", "label": 1, "speaker": "x", "snr_db": 5.0}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "speaker": "y"}) + "\n")
    first, second = read_pairs(tmp_path / "m.jsonl")
    assert first.columns == {"speaker": "x", "snr_db": 5.0} and second.columns["speaker"] == "y"
    assert first == second and hash(first) == hash(second)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Six tones by two speakers and a default binding (its answers are arbitrary, their bookkeeping is not)."""
    root = tmp_path_factory.mktemp("grouped")
    rows = []
    for i in range(6):
        t = np.arange(int((0.4 + 0.1 * i) * SR)) / SR
        write_wav(root / f"{i}.wav", (0.3 * np.sin(2 * np.pi * (220 + 90 * i) * t)).astype(np.float32), SR)
        rows.append({"modality": "audio", "path": f"{i}.wav", "label": i % 3, "speaker": "ab"[i // 4],
                     **({"room": "hall"} if i == 0 else {})})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    BindingModel.default(["image", "text", "audio"]).save(root / "model")
    return root


def test_group_figures_add_up_to_the_whole(grouped):
    model = BindingModel.load(grouped / "model")
    out = evaluate_manifest(model, str(grouped / "m.jsonl"), classes=("zero", "one", "two"), group="speaker")
    groups = out["by_speaker"]
    assert {k: v["items"] for k, v in groups.items()} == {"a": 4, "b": 2}
    whole = sum(v["items"] * v["zero_shot_top1"] for v in groups.values()) / out["items"]
    assert whole == pytest.approx(out["zero_shot_top1"])
    by_label = evaluate_manifest(model, str(grouped / "m.jsonl"), classes=("zero", "one", "two"), group="label")
    assert {k: v["items"] for k, v in by_label["by_label"].items()} == {"0": 2, "1": 2, "2": 2}
    sparse = evaluate_manifest(model, str(grouped / "m.jsonl"), classes=("zero", "one", "two"), group="room")
    assert {k: v["items"] for k, v in sparse["by_room"].items()} == {"(none)": 5, "hall": 1}


def test_group_errors_are_clear(grouped):
    model = BindingModel.load(grouped / "model")
    with pytest.raises(ConfigError, match="no row has a column 'speakr'.*speaker"):
        evaluate_manifest(model, str(grouped / "m.jsonl"), classes=("zero", "one", "two"), group="speakr")
    with pytest.raises(ConfigError, match="needs something to measure"):
        evaluate_manifest(model, str(grouped / "m.jsonl"), group="speaker")


def test_eval_cli_prints_groups_and_refuses_a_typo_without_a_traceback(grouped):
    args = ["eval", str(grouped / "m.jsonl"), "--model", str(grouped / "model"), "--classes", "zero,one,two"]
    ok = CliRunner().invoke(app, args + ["--group", "speaker"])
    assert ok.exit_code == 0, ok.output
    assert set(json.loads(ok.output)["by_speaker"]) == {"a", "b"}
    bad = CliRunner().invoke(app, args + ["--group", "speakr"])
    assert bad.exit_code != 0 and "no row has a column 'speakr'" in str(bad.exception)
