"""benchmarks/real_speech.py: a folder of {digit}_{speaker}_{take}.wav scored per speaker, refusals counted."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from samplegen import SMALL_OPTIONS
from samplegen_audio import voiced_speech, write_wav

from binder.config import BindConfig, ModalityConfig
from binder.errors import AnybindError
from binder.model import BindingModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_speech import measure_binding, merge_result, score, spoken_digits  # noqa: E402

CLASSES = tuple("zero one two three four five six seven eight nine".split())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("digits")
    for digit in range(3):
        for take in range(2):
            write_wav(d / f"{digit}_anna_{take}.wav", voiced_speech(0.3, 8000, seed=digit * 10 + take), 8000)
    write_wav(d / "4_ben_0.wav", voiced_speech(0.2, 8000, seed=7), 8000)
    write_wav(d / "5_ben_1.wav", voiced_speech(0.01, 8000, seed=8), 8000)  # under one window: refused
    (d / "README.md").write_text("not a take\n")
    write_wav(d / "noise.wav", voiced_speech(0.3, 8000), 8000)  # not named like a take: ignored
    return d


def test_takes_are_read_from_their_names_and_other_files_ignored(folder):
    records = spoken_digits(folder, "audio")
    assert len(records) == 8
    assert {(r.label, r.text) for r in records} >= {(0, "anna"), (4, "ben"), (5, "ben")}
    with pytest.raises(AnybindError, match="no .*digit.*speaker.*take"):
        spoken_digits(folder / "nowhere", "audio")


def test_scores_per_speaker_and_counts_refusals_as_lost(folder, tmp_path):
    model = BindingModel(BindConfig(modalities=(ModalityConfig("audio", options=SMALL_OPTIONS["audio"]),)))
    out = score(model, spoken_digits(folder, "audio"), CLASSES, ("the digit {}",), workers=1, progress=False)
    assert out["items"] == 8 and out["refused"] == 1
    assert out["speakers"]["anna"] == {"items": 6, "refused": 0, "top1": out["speakers"]["anna"]["top1"]}
    assert out["speakers"]["ben"]["items"] == 2 and out["speakers"]["ben"]["refused"] == 1
    assert out["refusals"][0]["path"].endswith("5_ben_1.wav")
    hits = round(out["top1"] * 7)
    assert out["top1_all"] == pytest.approx(hits / 8)
    results = tmp_path / "r.json"
    merge_result(results, "a", {"x": 1})
    merge_result(results, "b", {"x": 2})
    assert json.loads(results.read_text()) == {"a": {"x": 1}, "b": {"x": 2}}


def test_a_binding_is_measured_on_each_split_it_has_and_on_real_speech(folder, tmp_path):
    from binder.train.evaluate import evaluate_manifest
    from binder.train.recipe import load_recipe

    rows = [{"modality": "audio", "path": str(f), "label": int(f.name[0])} for f in sorted(folder.glob("[0-9]_*.wav"))]
    for split, chosen in (("val", rows[:4]), ("test", rows[4:])):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chosen))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[train]\nroot = "{tmp_path}"\n[[modality]]\nname = "audio"\ntrain = "val.jsonl"\n'
                      'val = "val.jsonl"\ntest = "test.jsonl"\n'
                      '[eval]\nclasses = ["zero", "one", "two", "three", "four", "five"]\ntemplates = ["{}"]\n')
    rec = load_recipe(recipe)
    model = BindingModel(BindConfig(modalities=(ModalityConfig("audio", options=SMALL_OPTIONS["audio"]),)))
    figures = measure_binding(model, rec, folder, "audio")
    assert set(figures["splits"]) == {"audio"} and set(figures["splits"]["audio"]) == {"val", "test"}  # no hard
    direct = score(model, spoken_digits(folder, "audio"), rec.eval.classes, rec.eval.templates, progress=False)
    assert figures["dev"] == direct["top1_all"] and figures["dev_refused"] == 1
    assert figures["dev_speakers"] == {s: r["top1"] for s, r in direct["speakers"].items()}
    for split in ("val", "test"):  # the recipe names its manifests relative to its root
        alone = evaluate_manifest(model, str(tmp_path / f"{split}.jsonl"), None, rec.eval.classes, rec.eval.templates)
        assert figures["splits"]["audio"][split] == alone["zero_shot_top1"]
