"""Loading only the towers a job needs (binder.lazy, BindingModel.load(folder, modalities))."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from binder.cli import app
from binder.errors import AnchorError, CheckpointError, ModalityError
from binder.lazy import causal_mask
from binder.model import BindingModel


@pytest.fixture(scope="module")
def ib_folder(tmp_path_factory):
    """An imagebind-test model (own trunk per modality, anchor image + text towers) saved to a folder."""
    folder = tmp_path_factory.mktemp("ib")
    BindingModel.from_preset("imagebind-test").save(folder)
    return folder


@pytest.fixture(scope="module")
def shared_folder(tmp_path_factory):
    """A model whose modalities share the anchor's image blocks as their trunk (Meta-Transformer)."""
    folder = tmp_path_factory.mktemp("shared")
    BindingModel.default(["audio", "depth", "imu"], seed=3).save(folder)
    return folder


def _input(model: BindingModel, name: str) -> torch.Tensor:
    if name == "text":
        return model.anchor.tokenize(["a dog barking", "the digit seven"])
    return torch.randn(3, *model.modality(name).input_shape(), generator=torch.Generator().manual_seed(1))


def _materialized(model: BindingModel, prefix: str) -> bool:
    tensors = [t for n, t in model.state_dict(keep_vars=True).items() if n.startswith(prefix)]
    return bool(tensors) and not any(t.is_meta for t in tensors)


@pytest.mark.parametrize("which", ["ib", "shared"])
def test_a_partial_model_embeds_exactly_as_the_whole_one(which, ib_folder, shared_folder):
    folder = ib_folder if which == "ib" else shared_folder
    full = BindingModel.load(folder)
    for name in full.modalities:
        part = BindingModel.load(folder, [name])
        assert list(part.modalities) == [name]
        x = _input(full, name)
        with torch.no_grad():
            assert torch.equal(full.encode(name, x), part.encode(name, x)), name


def test_one_modality_reads_only_its_own_tower(ib_folder):
    part = BindingModel.load(ib_folder, ["audio"])
    assert _materialized(part, "tokenizers.audio.") and _materialized(part, "trunks.audio.")
    assert not _materialized(part, "anchor.clip.visual.") and not _materialized(part, "anchor.clip.transformer.")
    assert "depth" not in part.tokenizers and "depth" not in part.trunks
    loaded = sum(t.numel() for t in part.state_dict().values() if not t.is_meta)
    whole = sum(t.numel() for t in BindingModel.load(ib_folder).state_dict().values())
    assert loaded < 0.3 * whole


def test_text_loads_the_text_tower_and_its_causal_mask(ib_folder):
    part = BindingModel.load(ib_folder, ["audio", "text"])
    assert _materialized(part, "anchor.clip.transformer.") and not _materialized(part, "anchor.clip.visual.")
    assert torch.equal(part.anchor.clip.attn_mask, causal_mask(part.anchor.clip.attn_mask.shape[0]))
    assert torch.equal(BindingModel.load(ib_folder).anchor.clip.attn_mask, part.anchor.clip.attn_mask)


def test_a_shared_trunk_loads_the_image_blocks_it_reuses(shared_folder):
    part = BindingModel.load(shared_folder, ["audio"])
    assert _materialized(part, "trunk.") and not _materialized(part, "anchor.clip.transformer.")


def test_a_modality_left_out_says_how_to_load_it(ib_folder):
    part = BindingModel.load(ib_folder, ["audio"])
    with pytest.raises(ModalityError, match="only the parts of audio.*'depth'"):
        part.encode("depth", torch.zeros(1, *BindingModel.load(ib_folder, ["depth"]).modality("depth").input_shape()))
    with pytest.raises(ModalityError, match="no binding for modality 'video'"):
        part.modality("video")
    assert list(BindingModel.load(ib_folder, ["audio", "video"]).modalities) == ["audio"]


@pytest.mark.parametrize("which", ["ib", "shared"])
def test_an_anchor_tower_left_out_is_an_error_not_a_meta_answer(which, ib_folder, shared_folder):
    """Without "text", class prompts used to come back as meta tensors that mixed silently with real
    embeddings into a wrong zero-shot answer."""
    part = BindingModel.load(ib_folder if which == "ib" else shared_folder, ["audio"])
    with pytest.raises(AnchorError, match="text tower was not loaded.*'text'"):
        part.anchor.encode_text(part.anchor.tokenize(["the digit seven"]))
    if which == "ib":  # the shared trunk materializes the image blocks, not the whole image tower
        with pytest.raises(AnchorError, match="image tower was not loaded"):
            part.anchor.encode_image(torch.zeros(1, *BindingModel.load(ib_folder, ["image"]).modality("image")
                                                 .input_shape()))
    with_text = BindingModel.load(ib_folder, ["audio", "text"]) if which == "ib" else BindingModel.load(shared_folder)
    z = with_text.anchor.encode_text(with_text.anchor.tokenize(["the digit seven"]))
    assert not z.is_meta and torch.isfinite(z).all()


def test_a_partial_model_refuses_to_be_saved(ib_folder, tmp_path):
    with pytest.raises(CheckpointError, match="load it whole"):
        BindingModel.load(ib_folder, ["audio"]).save(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _damaged_copy(src, dst, edit) -> None:
    dst.mkdir()
    (dst / "config.json").write_bytes((src / "config.json").read_bytes())
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))


def test_a_missing_or_bad_tensor_of_a_wanted_part_is_a_checkpoint_error(ib_folder, tmp_path):
    key = next(k for k in load_file(str(ib_folder / "model.safetensors")) if k.startswith("heads.audio."))
    _damaged_copy(ib_folder, tmp_path / "missing", lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=f"missing tensor {key}"):
        BindingModel.load(tmp_path / "missing", ["audio"])
    BindingModel.load(tmp_path / "missing", ["depth"])  # a part that does not need it still loads

    def nan(state):
        state[key] = torch.full_like(state[key], float("nan"))
    _damaged_copy(ib_folder, tmp_path / "nan", nan)
    with pytest.raises(CheckpointError, match="NaN"):
        BindingModel.load(tmp_path / "nan", ["audio"])

    def reshaped(state):
        state[key] = torch.zeros(*state[key].shape, 2)
    _damaged_copy(ib_folder, tmp_path / "shape", reshaped)
    with pytest.raises(CheckpointError, match="shape"):
        BindingModel.load(tmp_path / "shape", ["audio"])

    def extra(state):
        state["heads.audio.stray"] = torch.zeros(2)
    _damaged_copy(ib_folder, tmp_path / "extra", extra)
    with pytest.raises(CheckpointError, match="unexpected"):
        BindingModel.load(tmp_path / "extra", ["audio"])


def test_embed_loads_only_the_modalities_of_its_files(ib_folder, tmp_path, monkeypatch):
    from samplegen_audio import make_audio

    wav = make_audio(tmp_path)
    seen: list = []
    real = BindingModel.load.__func__

    def spy(cls, folder, modalities=None):
        seen.append(modalities)
        return real(cls, folder, modalities)
    monkeypatch.setattr(BindingModel, "load", classmethod(spy))
    result = CliRunner().invoke(app, ["embed", str(wav), "--model", str(ib_folder), "--format", "jsonl", "--quiet"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert [set(m) for m in seen] == [{"audio"}]
    full = BindingModel.load(ib_folder).embed_files("audio", [wav])[0].numpy()
    np.testing.assert_array_equal(np.asarray(row["embedding"], dtype=np.float32), full)
