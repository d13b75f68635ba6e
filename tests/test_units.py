"""HuBERT's second iteration: codebooks of a trained binding's hidden features (binder.train.units)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from samplegen import MAKERS

from binder.config import BindConfig, ModalityConfig
from binder.errors import AnybindError, ModalityError
from binder.model import BindingModel
from binder.train.units import fit_first_codebook, fit_next_codebook, hidden_extractor
from modalities.speech_units import Codebook, dedup_units, nearest_units

OPTIONS = {"max_frames": 200, "max_units": 64}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("units")
    paths = [str(MAKERS["speech_units"](folder, seed)) for seed in range(8)]
    book, failed = fit_first_codebook(paths, k=16, seed=0, options=OPTIONS, progress=False)
    assert not failed
    book.save(folder / "iter1.safetensors")
    lines = [{"modality": "speech_units", "path": Path(p).name, "image": "x.png"} for p in paths]
    (folder / "bad.speech.wav").write_bytes(b"RIFF not really")
    lines.append({"modality": "speech_units", "path": "bad.speech.wav", "image": "x.png"})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder, paths


def model_with(codebook: Path, k: int, seed: int = 0) -> BindingModel:
    options = {**OPTIONS, "codebook": str(codebook), "num_units": k}
    return BindingModel(BindConfig(modalities=(ModalityConfig("speech_units", options),), seed=seed)).eval()


@pytest.fixture(scope="module")
def first(speech) -> BindingModel:
    return model_with(speech[0] / "iter1.safetensors", 16)


def test_the_codebook_is_a_pure_function_of_model_data_and_seed(speech, first, tmp_path):
    _, paths = speech
    a, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    b, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    other_seed, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=1, progress=False)
    other_model, _ = fit_next_codebook(model_with(speech[0] / "iter1.safetensors", 16, seed=5), paths, layer=1, k=8,
                                       seed=0, progress=False)
    assert not np.array_equal(other_seed.centroids, a.centroids)
    assert not np.array_equal(other_model.centroids, a.centroids)
    width = first.trunk_for("speech_units").width
    assert a.iteration == 2 and a.info["layer"] == 1 and a.centroids.shape == (8, width)


def test_the_codebook_round_trips_and_a_binding_trained_on_it_uses_it(speech, first, tmp_path):
    _, paths = speech
    book, _ = fit_next_codebook(first, paths, layer=2, k=8, seed=0, progress=False)
    book.save(tmp_path / "iter2.safetensors")
    back = Codebook.load(tmp_path / "iter2.safetensors")
    assert back.info == json.loads(json.dumps(book.info)) and back.extras.keys() == book.extras.keys()
    assert all(np.array_equal(back.extras[k], book.extras[k]) for k in book.extras)
    assert np.array_equal(back.centroids, book.centroids) and np.array_equal(back.std, book.std)

    second = model_with(tmp_path / "iter2.safetensors", 8)
    tok = second.tokenizers["speech_units"]
    modality = second.modality("speech_units")
    x = modality.collate([modality.prepare(p) for p in paths[:3]])
    hidden, valid = hidden_extractor(first, layer=2)(x)  # the first binding's features, computed directly
    ids = nearest_units(hidden, torch.from_numpy(book.mean), torch.from_numpy(book.std),
                        torch.from_numpy(book.centroids))
    assert torch.equal(tok.units(x), dedup_units(ids, valid, 64, 8))
    assert not any(p.requires_grad for p in tok.source.parameters())  # the extractor never trains
    second.save(tmp_path / "model")
    again = BindingModel.load(tmp_path / "model")
    assert torch.equal(again.encode("speech_units", x), second.encode("speech_units", x))

    third, _ = fit_next_codebook(second, paths, layer=1, k=4, seed=0, progress=False)  # and on: iteration 3
    third.save(tmp_path / "iter3.safetensors")
    assert third.iteration == 3
    assert model_with(tmp_path / "iter3.safetensors", 4).tokenizers["speech_units"].iteration == 3


def test_codebook_errors_are_clear(speech, first, tmp_path):
    _, paths = speech
    book, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    book.save(tmp_path / "iter2.safetensors")
    with pytest.raises(ValueError, match="n_mfcc"):
        BindingModel(BindConfig(modalities=(ModalityConfig("speech_units", {
            **OPTIONS, "codebook": str(tmp_path / "iter2.safetensors"), "num_units": 8, "n_mfcc": 20}),)))
    with pytest.raises(AnybindError, match="layer must be"):
        fit_next_codebook(first, paths, layer=99, k=8, progress=False)
    with pytest.raises(AnybindError, match="at least k"):
        fit_next_codebook(first, paths[:1], layer=1, k=5000, progress=False)
    with pytest.raises((ModalityError, AnybindError)):
        fit_next_codebook(first, [str(tmp_path / "missing.speech.wav")], layer=1, k=2, progress=False)


def test_cli_fits_both_iterations_and_skips_bad_files(speech, first, tmp_path, capfd):
    folder, _ = speech
    code, out, err = run_cli(["units", "fit", str(folder / "train.jsonl"), "--out", str(tmp_path / "i1.safetensors"),
                              "--k", "8", "--quiet"], capfd)
    assert code == 0, err
    assert "iteration 1" in out and "1 skipped" in out and "skipped" in err and "bad.speech.wav" in err
    first.save(tmp_path / "model")
    code, out, err = run_cli(["units", "fit", str(folder / "train.jsonl"), "--out", str(tmp_path / "i2.safetensors"),
                              "--model", str(tmp_path / "model"), "--layer", "1", "--k", "8", "--quiet"], capfd)
    assert code == 0, err
    assert "iteration 2, layer 1" in out
    assert Codebook.load(tmp_path / "i2.safetensors").iteration == 2


def test_damaged_codebooks_are_refused_by_name(speech, first, tmp_path):
    from safetensors.numpy import save_file

    from binder.errors import CheckpointError

    _, paths = speech
    book, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    tensors = {"centroids": book.centroids, "mean": book.mean, "std": book.std}
    cases = {
        "nan.safetensors": ({**tensors, "centroids": np.full_like(book.centroids, np.nan)}, "{}", "NaN"),
        "bare.safetensors": (tensors, json.dumps(book.info), "lacks its feature extractor"),
        "info.safetensors": (tensors, "[1, 2]", "not a JSON object"),
        "iteration.safetensors": (tensors, json.dumps({"iteration": "two"}), "integer iteration"),
    }
    for name, (data, info, message) in cases.items():
        save_file(data, str(tmp_path / name), metadata={"info": info})
        with pytest.raises(CheckpointError, match=message) as caught:
            Codebook.load(tmp_path / name)
        assert name in str(caught.value)
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError, match="not a safetensors codebook"):
        Codebook.load(tmp_path / "cut.safetensors")
