"""binder.model_choice: the one rule for which model a job uses, shared by the CLI and the server."""
from __future__ import annotations

import pytest

from binder.errors import IndexStoreError
from binder.model_choice import MODEL_ENV, UNTRAINED, index_model_spec, model_name, model_spec


def test_a_named_model_wins_then_the_environment_then_the_untrained_default(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert model_spec(None) is None and model_spec("") is None
    monkeypatch.setenv(MODEL_ENV, "env-model")
    assert model_spec(None) == "env-model" and model_spec("given") == "given"


def test_an_index_uses_its_own_model_and_refuses_another(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    index, own, other = tmp_path / "index", tmp_path / "own", tmp_path / "other"
    for folder in (index, own, other):
        folder.mkdir()
    assert index_model_spec(index, "own", None) == str(own)
    assert index_model_spec(index, "own", str(own)) == str(own)  # the same folder, named: fine
    with pytest.raises(IndexStoreError, match=f"built with model {own}; --model {other} is another model"):
        index_model_spec(index, "own", str(other))  # never silently ignored
    with pytest.raises(IndexStoreError, match="is another model"):
        index_model_spec(index, "own", "imagebind-huge")  # a known name not in the cache is not this folder
    (index / "beside").mkdir()
    assert index_model_spec(index, "beside", None) == str(index / "beside")  # relative to the index too


def test_a_recorded_model_that_has_gone_is_an_error_unless_one_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IndexStoreError, match="built with model gone, which is not there any more; pass --model"):
        index_model_spec(tmp_path, "gone", None)
    assert index_model_spec(tmp_path, "gone", "named") == "named"
    assert index_model_spec(tmp_path, None, None) is None  # an index of the untrained default
    assert index_model_spec(tmp_path, UNTRAINED, None) is None
    monkeypatch.setenv(MODEL_ENV, "env-model")
    assert index_model_spec(tmp_path, None, None) == "env-model"


def test_outputs_name_a_folder_by_its_last_two_parts_and_never_by_its_full_path(tmp_path):
    folder = tmp_path / "demo" / "model"
    folder.mkdir(parents=True)
    assert model_name(str(folder)) == "demo/model"
    assert model_name("imagebind_huge") == "imagebind_huge" and model_name(None) == UNTRAINED


def test_the_untrained_default_says_so_and_a_named_folder_loads_quietly(tmp_path, monkeypatch):
    from binder.model_choice import load_model

    monkeypatch.delenv(MODEL_ENV, raising=False)
    notes: list[str] = []
    model = load_model(notify=notes.append)
    assert notes and "UNTRAINED" in notes[0] and not model.training
    model.save(tmp_path / "m")
    notes.clear()
    loaded = load_model(str(tmp_path / "m"), modalities=["text"], notify=notes.append)
    assert not notes and loaded.embed_dim == model.embed_dim

