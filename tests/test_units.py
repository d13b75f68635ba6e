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
from binder.model import FORMAT_VERSION, BindingModel
from binder.train.units import fit_first_codebook, fit_next_codebook, hidden_extractor
from modalities.speech_codebook import Codebook, nearest_units
from modalities.speech_units import dedup_units

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
    with pytest.raises(ValueError, match="level"):  # its units come from features at the level decoded
        BindingModel(BindConfig(modalities=(ModalityConfig("speech_units", {
            **OPTIONS, "codebook": str(tmp_path / "iter2.safetensors"), "num_units": 8, "level": "rms"}),)))
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


def test_a_codebook_made_before_an_option_existed_reads_as_made_at_its_default(speech, first, tmp_path):
    _, paths = speech
    book, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    features = book.info["tokenizer"]["features"]
    assert features["level"] == "none"
    for key in ("level", "level_dbfs", "max_level_gain_db"):  # as a codebook from before loudness normalization
        del features[key]
    book.save(tmp_path / "old.safetensors")
    config = {**OPTIONS, "codebook": str(tmp_path / "old.safetensors"), "num_units": 8}
    BindingModel(BindConfig(modalities=(ModalityConfig("speech_units", config),)))
    with pytest.raises(ValueError, match="'level': 'none'"):
        BindingModel(BindConfig(modalities=(ModalityConfig("speech_units", {**config, "level": "rms"}),)))


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


# ---------------------------------------------------------------- self-contained model folders

CODEBOOK_FILE = "speech_units.codebook.safetensors"


def _config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _set_codebook(folder: Path, value, version: int | None = None) -> None:
    payload = _config_of(folder)
    payload["bind"]["modalities"][0]["options"]["codebook"] = value
    if version is not None:
        payload["format_version"] = version
    (folder / "config.json").write_text(json.dumps(payload))


def _batch(model: BindingModel, paths: list[str]) -> torch.Tensor:
    modality = model.modality("speech_units")
    return modality.collate([modality.prepare(p) for p in paths])


def test_a_saved_model_carries_its_codebook_and_loads_from_anywhere(speech, first, tmp_path, monkeypatch):
    import shutil

    folder, paths = speech
    book, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    book.save(tmp_path / "iter2.safetensors")
    for model, source in ((first, folder / "iter1.safetensors"),
                          (model_with(tmp_path / "iter2.safetensors", 8), tmp_path / "iter2.safetensors")):
        saved = model.save(tmp_path / "train" / f"model{model.tokenizers['speech_units'].iteration}")
        assert _config_of(saved)["bind"]["modalities"][0]["options"]["codebook"] == CODEBOOK_FILE
        assert (saved / CODEBOOK_FILE).read_bytes() == source.read_bytes()
        moved = tmp_path / "elsewhere" / saved.name
        shutil.move(saved, moved)
        monkeypatch.chdir(tmp_path / "elsewhere")  # neither the training folder nor the model's
        x = _batch(model, paths[:2])
        for loaded in (BindingModel.load(moved), BindingModel.load(moved, modalities=["speech_units"])):
            assert torch.equal(loaded.encode("speech_units", x), model.encode("speech_units", x))
        again = BindingModel.load(moved)
        again.save(moved)  # into its own folder: the codebook is already there
        again.save(tmp_path / "copy" / moved.name)  # and into another: it travels along
        assert (tmp_path / "copy" / moved.name / CODEBOOK_FILE).read_bytes() == source.read_bytes()
        assert torch.equal(BindingModel.load(tmp_path / "copy" / moved.name).encode("speech_units", x),
                           model.encode("speech_units", x))
    (tmp_path / "iter2.safetensors").unlink()  # what the saved model needs is inside it
    assert BindingModel.load(tmp_path / "copy" / "model2").tokenizers["speech_units"].iteration == 2


@pytest.mark.parametrize("value, problem", [
    ("../../../../etc/hostname", "leaves the model folder"),
    ("sub/../../x.safetensors", "leaves the model folder"),
    ("/etc/hostname", "is an absolute path"),
    ("link.safetensors", "leads out of the model folder through a link"),
    ("absent.safetensors", "is not a file in the model folder"),
    (3, "is not a file name"),
])
def test_config_paths_may_not_leave_the_model_folder(speech, first, tmp_path, monkeypatch, value, problem):
    from binder.errors import CheckpointError
    from modalities.speech_codebook import Codebook as Book

    saved = first.save(tmp_path / "model")
    (saved / "link.safetensors").symlink_to(speech[0] / "iter1.safetensors")
    _set_codebook(saved, value)
    opened = []
    monkeypatch.setattr(Book, "load", classmethod(lambda cls, path: opened.append(path)))
    with pytest.raises(CheckpointError, match=f"speech_units option codebook = .* {problem}") as caught:
        BindingModel.load(saved)
    assert "config.json" in str(caught.value) and opened == []


def test_older_model_folders_load_from_their_weights_without_opening_outside_paths(speech, first, tmp_path,
                                                                                   monkeypatch):
    from binder.errors import CheckpointError
    from modalities.speech_codebook import Codebook as Book

    folder, paths = speech
    x = _batch(first, paths[:2])
    saved = first.save(tmp_path / "model")
    (saved / CODEBOOK_FILE).unlink()  # as a format-1 folder: no copy inside
    load = Book.load
    opened: list[str] = []
    monkeypatch.setattr(Book, "load", classmethod(lambda cls, path: opened.append(str(path)) or load(path)))
    for value in (str(folder / "iter1.safetensors"), "out/world/speech_units_codebook.safetensors",
                  "../../../../etc/hostname"):
        _set_codebook(saved, value, version=1)
        old = BindingModel.load(saved)
        assert opened == [] and old.config.modality("speech_units").options["codebook"] is None
        assert torch.equal(old.encode("speech_units", x), first.encode("speech_units", x))
    old.save(tmp_path / "resaved")  # re-saved, it is a current, self-contained folder
    assert _config_of(tmp_path / "resaved")["format_version"] == FORMAT_VERSION
    assert torch.equal(BindingModel.load(tmp_path / "resaved").encode("speech_units", x),
                       first.encode("speech_units", x))

    book, _ = fit_next_codebook(first, paths, layer=1, k=8, seed=0, progress=False)
    book.save(tmp_path / "iter2.safetensors")
    second = model_with(tmp_path / "iter2.safetensors", 8).save(tmp_path / "model2")
    (second / CODEBOOK_FILE).rename(tmp_path / "outside.safetensors")
    opened.clear()  # building the model above read it, as training does
    _set_codebook(second, str(tmp_path / "outside.safetensors"), version=1)
    with pytest.raises(CheckpointError, match="copy it into .* and set the option to its file name"):
        BindingModel.load(second)
    assert opened == []
    (tmp_path / "outside.safetensors").rename(second / "iter2.safetensors")  # the fix the message gives
    _set_codebook(second, "iter2.safetensors")
    assert BindingModel.load(second).tokenizers["speech_units"].iteration == 2
    assert opened == [str(second.resolve() / "iter2.safetensors")]


def test_units_fit_errors_name_the_model_and_the_files(speech, tmp_path, capfd):
    folder, _ = speech
    other = BindingModel(BindConfig(modalities=(ModalityConfig("imu", {"length": 256, "kernel": 8}),)))
    other.save(tmp_path / "imu_model")
    code, out, err = run_cli(["units", "fit", str(folder / "train.jsonl"), "--out", str(tmp_path / "x.safetensors"),
                              "--model", str(tmp_path / "imu_model"), "--quiet"], capfd)
    assert code == 2 and not out and err.count("\n") == 1, err
    assert "holds no speech_units binding (it holds: imu)" in err and "internal error" not in err
    with pytest.raises(AnybindError, match=r"the model holds no speech_units binding \(it holds: imu\)"):
        hidden_extractor(other)

    bad = [tmp_path / f"bad{i}.speech.wav" for i in range(5)]
    for path in bad:
        path.write_bytes(b"RIFF not really")
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text("".join(json.dumps({"modality": "speech_units", "path": p.name, "image": "x.png"}) + "\n"
                                for p in bad))
    code, out, err = run_cli(["units", "fit", str(manifest), "--out", str(tmp_path / "y.safetensors"), "--quiet"],
                             capfd)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("anybind: error: no speech file could be read (5 tried:"), err
    assert "bad0.speech.wav: " in last and "bad2.speech.wav: " in last and "and 2 more" in last
    assert not (tmp_path / "y.safetensors").exists()


def test_units_fit_computes_hidden_features_on_the_device_it_is_given(speech, first, tmp_path, capfd, monkeypatch):
    import binder.train.units

    folder, _ = speech
    first.save(tmp_path / "model")
    args = ["units", "fit", str(folder / "train.jsonl"), "--out", str(tmp_path / "i2.safetensors"), "--model",
            str(tmp_path / "model"), "--layer", "1", "--k", "8", "--quiet"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli([*args, "--device", "cuda"], capfd)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert err.startswith("anybind: error: --device cuda: torch sees no CUDA device") and "Traceback" not in err
    assert not (tmp_path / "i2.safetensors").exists()
    code, _, err = run_cli(["units", "fit", str(folder / "train.jsonl"), "--out", str(tmp_path / "i1.safetensors"),
                            "--device", "cuda", "--quiet"], capfd)
    assert code == 2 and "torch sees no CUDA device" in err and not (tmp_path / "i1.safetensors").exists()

    seen = []
    fit = binder.train.units.fit_next_codebook
    monkeypatch.setattr(binder.train.units, "fit_next_codebook",
                        lambda *a, **kw: seen.append(kw["device"]) or fit(*a, **kw))
    code, out, err = run_cli([*args, "--device", "cpu"], capfd)
    assert code == 0 and "iteration 2" in out, err
    assert seen == [torch.device("cpu")]

