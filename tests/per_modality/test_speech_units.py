"""Speech units: MFCC features with NaN padding, codebook fit/save/load, dedup, tokenizer pad mask."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from samplegen import MAKERS
from samplegen_audio import voiced_speech, write_wav

from binder.config import FILE_OPTION
from binder.errors import CheckpointError, ModalityError
from binder.io import is_temp_name
from binder.registry import modality_for_path
from binder.train.units import fit_first_codebook
from modalities.speech_codebook import Codebook
from modalities.speech_units import SpeechUnits, dedup_units, mfcc_features

SR = 16000


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    return [MAKERS["speech_units"](d, seed) for seed in range(3)]


@pytest.fixture(scope="module")
def codebook(speech_files):
    return fit_first_codebook(speech_files, k=16, seed=0, progress=False)[0]


def test_features_shape_and_nan_padding(speech_files):
    mod = SpeechUnits()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = mod.prepare(speech_files[0])
    assert x.shape == mod.input_shape() == (1000, 39) and x.dtype == torch.float32
    frames = 1 + int(1.5 * SR) // 160  # librosa centres frames: 151 for 1.5 s
    assert torch.isfinite(x[:frames]).all()
    assert torch.isnan(x[frames:]).all()
    assert x[:frames, 13:].abs().sum() > 0  # deltas are not all zero


def test_long_speech_keeps_the_first_max_frames(tmp_path):
    wave = voiced_speech(12.0, SR, seed=5)
    mod = SpeechUnits()
    x = mod.prepare(write_wav(tmp_path / "long.speech.wav", wave, SR, subtype="FLOAT"))
    assert torch.isfinite(x).all()
    np.testing.assert_allclose(x.numpy(), mfcc_features(wave, mod.options)[:1000], rtol=1e-5, atol=1e-4)


def test_bad_speech_files_raise_modality_error(tmp_path):
    nan = voiced_speech(1.0, SR)
    nan[50] = np.nan
    paths = [write_wav(tmp_path / "nan.speech.wav", nan, SR, subtype="FLOAT"),
             write_wav(tmp_path / "tiny.speech.wav", voiced_speech(0.01, SR), SR),
             tmp_path / "text.speech.wav"]
    paths[2].write_text("hello, not speech\n" * 10)
    for path in paths:
        with pytest.raises(ModalityError) as info:
            SpeechUnits().prepare(path)
        assert info.value.path == str(path)


def test_codebook_fit_save_load_roundtrip(tmp_path, speech_files, codebook):
    feats = SpeechUnits().prepare(speech_files[1]).numpy()
    path = tmp_path / "units.safetensors"
    codebook.save(path)
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]  # temp file replaced
    loaded = Codebook.load(path)
    assert loaded.centroids.shape == (16, 39)
    np.testing.assert_array_equal(loaded.centroids, codebook.centroids)
    np.testing.assert_array_equal(loaded.mean, codebook.mean)
    ids = codebook.assign(feats)
    np.testing.assert_array_equal(loaded.assign(feats), ids)
    assert (ids[151:] == -1).all() and (ids[:151] >= 0).all()
    assert len(np.unique(ids[:151])) > 3  # the frames do not collapse onto one unit
    again, _ = fit_first_codebook(speech_files, k=16, seed=0, progress=False)
    np.testing.assert_allclose(again.centroids, codebook.centroids)  # seeded fit is reproducible


def test_codebook_refuses_pickles(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"centroids": torch.zeros(4, 39), "mean": torch.zeros(39), "std": torch.ones(39)}, path)
    with pytest.raises(CheckpointError, match="evil.safetensors"):
        Codebook.load(path)
    with pytest.raises(CheckpointError):
        (m := SpeechUnits(codebook=str(path))).build_tokenizer(m.options, 8)
    with pytest.raises(CheckpointError, match="not found"):
        Codebook.load(tmp_path / "absent.safetensors")


def test_dedup_merges_repeats_and_left_packs():
    ids = torch.tensor([[3, 3, 3, 7, 7, 3, 0, 0], [1, 2, 2, 5, 5, 5, 2, 9]])
    valid = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    out = dedup_units(ids, valid, max_units=4, pad_id=99)
    # row 0: [3,7,3] then padding; row 1 skips its invalid frame, then is cut to 4 units
    assert out.tolist() == [[3, 7, 3, 99], [1, 2, 5, 2]]


def _onehot_codebook(k: int, dim: int) -> Codebook:
    centroids = np.zeros((k, dim), np.float32)
    centroids[np.arange(k), np.arange(k)] = 5.0
    return Codebook(centroids, np.full(dim, 2.0), np.full(dim, 3.0))


def test_tokenizer_pad_mask_marks_exactly_the_padding():
    mod = SpeechUnits(max_frames=12, num_units=5, max_units=6)
    tok = mod.build_tokenizer(mod.options, width=8)
    cb = _onehot_codebook(5, 39)
    tok.set_codebook(cb)
    raw = cb.centroids * cb.std + cb.mean  # feature rows that sit exactly on each centroid
    x = torch.full((2, 12, 39), float("nan"))
    x[0, :5] = torch.from_numpy(raw[[0, 0, 1, 1, 2]])
    x[1, :9] = torch.from_numpy(raw[[4, 3, 4, 3, 4, 3, 4, 3, 3]])
    x[1, :9] += 0.01 * torch.randn(9, 39, generator=torch.Generator().manual_seed(0))
    assert tok.units(x).tolist() == [[0, 1, 2, 5, 5, 5], [4, 3, 4, 3, 4, 3]]
    tokens, mask = tok(x)
    assert tokens.shape == (2, 7, 8)
    assert mask.tolist() == [[False] * 4 + [True] * 3, [False] * 7]
    # padded positions carry the zero padding embedding plus their position embedding only
    torch.testing.assert_close(tokens[0, 4:], tok.seq.pos[0, 4:].expand(3, -1))


def test_tokenizer_agrees_with_codebook_and_keeps_it_in_state_dict(tmp_path, speech_files, codebook):
    path = tmp_path / "cb.safetensors"
    codebook.save(path)
    mod = SpeechUnits(num_units=16, codebook=str(path))
    tok = mod.build_tokenizer(mod.options, width=8)
    torch.testing.assert_close(tok.state_dict()["centroids"], torch.from_numpy(codebook.centroids))
    x = mod.prepare(speech_files[2])
    ids = codebook.assign(x.numpy())
    ids = ids[ids >= 0]
    expected = [int(u) for i, u in enumerate(ids) if i == 0 or u != ids[i - 1]][:256]
    units = tok.units(x[None])[0]
    assert units[: len(expected)].tolist() == expected
    assert (units[len(expected):] == 16).all()


def test_random_codebook_is_deterministic_and_checked():
    a = SpeechUnits().build_tokenizer(SpeechUnits().options, 8)
    b = SpeechUnits().build_tokenizer(SpeechUnits().options, 8)
    torch.testing.assert_close(a.centroids, b.centroids)
    with pytest.raises(ValueError, match="shape"):
        a.set_codebook(_onehot_codebook(5, 39))


def test_registry_routes_double_extension():
    assert modality_for_path("u/hello.speech.wav") == "speech_units"
    assert modality_for_path("u/hello.wav") == "audio"
    assert "max_frames" in SpeechUnits().describe()


def test_codebooks_live_in_their_own_module():
    """The modality loads and tokenizes; k-means fitting, codebook files and the extractor's trunk
    blocks are modalities.speech_codebook's (fitting from speech files: binder.train.units)."""
    import ast
    import inspect

    import modalities.speech_codebook as codebooks
    import modalities.speech_units as units

    assert Codebook.__module__ == codebooks.__name__ and codebooks.trunk_layers.__module__ == codebooks.__name__
    defined = {n.name for n in ast.parse(inspect.getsource(units)).body if isinstance(n, (ast.FunctionDef,
                                                                                         ast.ClassDef))}
    assert not defined & {"Codebook", "fit_codebook", "trunk_layers", "nearest_units"}
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(codebooks))) if isinstance(n, ast.ImportFrom)}
    assert units.__name__ not in imported  # the modality imports its codebooks, not the other way round
    assert [f.name for f in dataclasses.fields(SpeechUnits.Options) if f.metadata.get(FILE_OPTION)] == ["codebook"]
