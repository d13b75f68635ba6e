"""Named perturbations for robustness evaluation: parsed strictly, repeatable, and doing what they say."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from binder.cli import app
from binder.errors import AnybindError
from binder.model import BindingModel
from binder.registry import get_modality
from binder.train.perturb import parse_perturbation

SR = 16000


def tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1320 * t)).astype(np.float32)


def test_bad_specs_are_clear_errors():
    with pytest.raises(AnybindError, match="unknown perturbation 'snrr'.*snr \\(white noise"):
        parse_perturbation("snrr=10", "audio")
    with pytest.raises(AnybindError, match="give a number"):
        parse_perturbation("snr=loud", "audio")
    with pytest.raises(AnybindError, match="finite"):
        parse_perturbation("snr=inf", "audio")
    with pytest.raises(AnybindError, match="no perturbations for modality 'text'"):
        parse_perturbation("snr=10", "text")


def test_audio_perturbations_do_what_they_say_and_repeat():
    audio = get_modality("audio")()
    x = tone()
    noisy = parse_perturbation("snr=10", "audio")
    a, b = noisy(x, 3, audio), noisy(x, 3, audio)
    assert np.array_equal(a, b) and not np.array_equal(a, noisy(x, 4, audio))
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((a - x) ** 2))
    assert abs(snr - 10) < 0.5
    padded = parse_perturbation("silence=0.5,gain=-6", "audio")(x, 0, audio)
    assert len(padded) == len(x) + SR and not np.any(padded[: SR // 2 - 1])
    rms = np.sqrt(np.mean(padded[SR // 2: SR // 2 + len(x)] ** 2) / np.mean(x ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-6, abs=0.05)


def test_depth_rotation_keeps_the_shape_and_changes_the_map():
    depth = np.ones((32, 32), np.float32)
    depth[8:24, 12:20] = 2.0
    out = parse_perturbation("rotate=90", "depth")((depth, 0), 0, None)
    assert out[0].shape == depth.shape and out[1] == 0 and not np.allclose(out[0], depth)
    assert np.allclose(out[0], np.rot90(depth), atol=1e-3)


@pytest.mark.parametrize("modality, uncovered", [("depth", 0.0), ("thermal", None)])
def test_a_shift_moves_the_map_and_says_what_it_uncovered(modality, uncovered):
    """A 10 % move of a 40 px map is 4 px in x and y; depth has no return where nothing was seen,
    thermal repeats its edge."""
    frame = np.full((40, 40), 3.0, np.float32)
    frame[10:30, 14:26] = 5.0  # a bright block, moved as a whole
    shift = parse_perturbation("shift=0.1", modality)
    out = shift((frame, 16), 7, None)[0]
    assert np.array_equal(out, shift((frame, 16), 7, None)[0])  # the same item moves the same way
    ys, xs = np.nonzero(out == 5.0)
    dy, dx = ys.min() - 10, xs.min() - 14
    assert abs(dy) == 4 and abs(dx) == 4 and (ys.max() - ys.min(), xs.max() - xs.min()) == (19, 11)
    rows = slice(0, 4) if dy > 0 else slice(36, 40)
    if uncovered is None:
        assert np.all(out[rows] == 3.0)
    else:
        assert np.all(out[rows] == uncovered) and np.all(out[np.abs(out) > 0] >= 3.0)


def test_eval_cli_reports_the_perturbation(tmp_path):
    from samplegen_audio import write_wav

    rows = []
    for i in range(4):
        path = tmp_path / f"{i}.wav"
        write_wav(path, tone(0.6 + 0.1 * i), SR)
        rows.append({"modality": "audio", "path": path.name, "label": i % 2})
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    BindingModel.default(["image", "text", "audio"]).save(tmp_path / "model")
    args = ["eval", str(tmp_path / "test.jsonl"), "--model", str(tmp_path / "model"), "--classes", "zero,one"]
    clean = CliRunner().invoke(app, args)
    noisy = CliRunner().invoke(app, args + ["--perturb", "snr=0,silence=1"])
    assert clean.exit_code == 0 and noisy.exit_code == 0, (clean.output, noisy.output)
    out = json.loads(noisy.output)
    assert out["perturb"] == "snr=0,silence=1" and out["items"] == 4 and "perturb" not in json.loads(clean.output)
    bad = CliRunner().invoke(app, args + ["--perturb", "rotate=5"])
    assert bad.exit_code != 0 and "unknown perturbation 'rotate'" in str(bad.exception)


def test_a_perturbation_that_overflows_fails_the_file_not_the_run(tmp_path):
    from samplegen_audio import write_wav

    from binder.train.data import prepare_inputs, read_pairs

    write_wav(tmp_path / "a.wav", tone(0.6), SR)
    (tmp_path / "m.jsonl").write_text(json.dumps({"modality": "audio", "path": "a.wav", "label": 0}) + "\n")
    audio = get_modality("audio")()
    with pytest.raises(AnybindError, match="no usable audio files \\(1 failed\\)"):
        prepare_inputs(audio, read_pairs(tmp_path / "m.jsonl"), 1, False, parse_perturbation("gain=1000", "audio"))
    ok = prepare_inputs(audio, read_pairs(tmp_path / "m.jsonl"), 1, False, parse_perturbation("gain=-6", "audio"))
    assert torch.isfinite(ok.inputs).all()
