"""Model folders round-trip bit-exactly through safetensors + JSON, refuse pickles and mismatched
configs, and the frozen anchor can be saved, reloaded from a local folder or file, and never trains."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from samplegen import MAKERS

from binder.anchor import LOCAL_WEIGHTS, load_anchor, save_anchor_dir
from binder.checkpoint import CONFIG, WEIGHTS
from binder.config import AnchorConfig, BindConfig, ModalityConfig, TrunkConfig
from binder.errors import AnchorError, CheckpointError
from binder.model import BindingModel

SMALL = {
    "image": {},
    "text": {},
    "depth": dict(image_size=32, patch=8),
    "imu": dict(length=256, kernel=8),
    "timeseries": dict(length=64, patch=8, max_channels=4),
    "video": dict(num_frames=4, image_size=32, tubelet=(2, 8, 8)),
    "speech_units": dict(max_frames=200, max_units=64),
}


def _config(names, trunk: TrunkConfig | None = None, seed: int = 0) -> BindConfig:
    return BindConfig(trunk=trunk or TrunkConfig(),
                      modalities=tuple(ModalityConfig(n, options=SMALL[n]) for n in names), seed=seed)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("samples")
    return {n: [MAKERS[n](d, seed=s) for s in (0, 1)] for n in SMALL}


@pytest.fixture(scope="module")
def model() -> BindingModel:
    return BindingModel(_config(list(SMALL), seed=3)).eval()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    return model.save(tmp_path_factory.mktemp("ckpt") / "model")


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_embeddings(a: BindingModel, b: BindingModel, files, names) -> None:
    for name in names:
        ea, eb = a.embed_files(name, files[name]), b.embed_files(name, files[name])
        assert torch.equal(ea, eb), name


def _fresh_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_round_trip_is_bit_exact(model, saved, files):
    assert sorted(os.listdir(saved)) == [CONFIG, WEIGHTS]
    loaded = BindingModel.load(saved)
    assert loaded.config == model.config and not loaded.training
    _assert_same_state(model, loaded)
    _assert_same_embeddings(model, loaded, files, SMALL)
    # a model with another seed really is different, so the equality above means something
    other = BindingModel(_config(["depth"], seed=4)).eval()
    assert not torch.equal(other.embed_files("depth", files["depth"]), model.embed_files("depth", files["depth"]))


def test_load_never_unpickles(saved, files, model, monkeypatch):
    def no_pickles(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_pickles)
    monkeypatch.setattr(torch.serialization, "load", no_pickles)
    loaded = BindingModel.load(saved)
    assert torch.equal(loaded.embed_files("imu", files["imu"]), model.embed_files("imu", files["imu"]))


def _loss(model: BindingModel, name: str, batch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    z = model.encode(name, batch)
    logits = model.logit_scale(name) * z @ target.T
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(z)))


def _lora_Bs(model: BindingModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.trunk.named_parameters() if k.endswith(".B")}


def test_lora_model_trains_without_touching_the_anchor_and_round_trips(files, tmp_path):
    model = BindingModel(_config(["image", "depth", "imu"], TrunkConfig(lora_rank=2, trainable_blocks=1)))
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 64, 64, generator=g)
    anchor_before = model.anchor.encode_image(images)
    anchor_state = {k: v.clone() for k, v in model.anchor.state_dict().items()}
    lora_before = _lora_Bs(model)
    assert len(lora_before) == 2 * 2 and all(not b.any() for b in lora_before.values())  # 2 blocks x (in, out)
    trunk_before = {k: v.detach().clone() for k, v in model.trunk.named_parameters()
                    if ".0.A" not in k and ".0.B" not in k}

    model.train()
    assert model.trunk.training and not model.anchor.training
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    batch = torch.randn(4, 1, 32, 32, generator=g)
    target = torch.nn.functional.normalize(torch.randn(4, 64, generator=g), dim=-1)
    opt.zero_grad()
    _loss(model, "depth", batch, target).backward()
    opt.step()
    model.eval()

    assert torch.equal(model.anchor.encode_image(images), anchor_before)
    for k, v in model.anchor.state_dict().items():
        assert torch.equal(v, anchor_state[k]), k
    lora_after = _lora_Bs(model)
    assert all(lora_after[k].abs().sum() > 0 for k in lora_before)  # every LoRA B moved off zero
    changed = {k for k, v in model.trunk.named_parameters()
               if k in trunk_before and not torch.equal(v, trunk_before[k])}
    assert "blocks.1.mlp.c_fc.weight" in changed  # the unfrozen copy of the last block trained ...
    assert all(k.startswith("blocks.1.") for k in changed)  # ... and nothing else of the trunk

    loaded = BindingModel.load(model.save(tmp_path / "lora"))
    assert loaded.config.trunk == TrunkConfig(lora_rank=2, trainable_blocks=1)
    _assert_same_state(model, loaded)
    _assert_same_embeddings(model, loaded, files, ["image", "depth", "imu"])
    for k, v in _lora_Bs(loaded).items():
        assert torch.equal(v, lora_after[k])


def test_standalone_trunk_round_trips(files, tmp_path):
    trunk = TrunkConfig(kind="standalone", width=32, layers=2, heads=2)
    model = BindingModel(_config(["depth", "timeseries", "text"], trunk)).eval()
    assert model.trunk.width == 32 and model.tokenizers["depth"](torch.zeros(1, 1, 32, 32)).shape[-1] == 32
    loaded = BindingModel.load(model.save(tmp_path / "standalone"))
    _assert_same_state(model, loaded)
    _assert_same_embeddings(model, loaded, files, ["depth", "timeseries", "text"])


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_pickle_renamed_to_safetensors_is_refused(saved, tmp_path, zipfile):
    folder = _fresh_copy(saved, tmp_path / "pickled")
    torch.save({"w": torch.zeros(3)}, folder / WEIGHTS, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(CheckpointError, match="pickle") as info:
        BindingModel.load(folder)
    assert WEIGHTS in str(info.value)


def test_random_bytes_are_refused(saved, tmp_path):
    folder = _fresh_copy(saved, tmp_path / "noise")
    (folder / WEIGHTS).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="safetensors"):
        BindingModel.load(folder)


def test_truncated_weights_are_refused(saved, tmp_path):
    folder = _fresh_copy(saved, tmp_path / "cut")
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        BindingModel.load(folder)


def test_missing_files_are_refused(saved, tmp_path):
    no_config = _fresh_copy(saved, tmp_path / "no_config")
    (no_config / CONFIG).unlink()
    with pytest.raises(CheckpointError, match=CONFIG):
        BindingModel.load(no_config)
    no_weights = _fresh_copy(saved, tmp_path / "no_weights")
    (no_weights / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        BindingModel.load(no_weights)
    bad_json = _fresh_copy(saved, tmp_path / "bad_json")
    (bad_json / CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        BindingModel.load(bad_json)


@pytest.mark.parametrize("other", [
    _config(list(SMALL), TrunkConfig(lora_rank=2), seed=3),  # extra LoRA tensors
    _config([n for n in SMALL if n != "imu"], seed=3),  # one modality fewer
    BindConfig(modalities=tuple(ModalityConfig(n, options={**SMALL[n], "image_size": 48} if n == "depth" else SMALL[n])
                                for n in SMALL), seed=3),  # same names, other tensor shapes
], ids=["lora", "fewer_modalities", "other_shapes"])
def test_config_of_another_architecture_is_refused(saved, tmp_path, other):
    folder = _fresh_copy(saved, tmp_path / "mismatch")
    payload = json.loads((folder / CONFIG).read_text())
    payload["bind"] = other.to_dict()
    (folder / CONFIG).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="do not fit"):
        BindingModel.load(folder)


def test_unknown_config_keys_and_versions_are_refused(saved, tmp_path):
    folder = _fresh_copy(saved, tmp_path / "keys")
    payload = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps({**payload, "bind": {**payload["bind"], "flavour": 1}}))
    with pytest.raises(CheckpointError, match="flavour"):
        BindingModel.load(folder)
    (folder / CONFIG).write_text(json.dumps({**payload, "format_version": 99}))
    with pytest.raises(CheckpointError, match="99"):
        BindingModel.load(folder)


def test_an_older_folder_reads_its_inputs_with_the_defaults_it_was_saved_under(saved, tmp_path):
    folder = _fresh_copy(saved, tmp_path / "former")
    payload = json.loads((folder / CONFIG).read_text())
    assert payload["format_version"] == 3 and payload["bind"]["modalities"][2]["options"]["hole_fill"] == "local"
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    wall = 1.0 / (1.2 - 0.01 * xx - 0.005 * yy)  # a tilted wall, in metres
    wall[2:8, 24:30] = 0.0  # a hole near its nearest corner
    np.save(tmp_path / "wall.depth.npy", wall)

    def read(version: int, **options) -> tuple[str, torch.Tensor]:
        depth = {**payload["bind"]["modalities"][2], "options": {**SMALL["depth"], **options}}  # as saved before
        mods = [depth if i == 2 else m for i, m in enumerate(payload["bind"]["modalities"])]
        bind = {**payload["bind"], "modalities": mods}
        (folder / CONFIG).write_text(json.dumps({**payload, "format_version": version, "bind": bind}))
        modality = BindingModel.load(folder).modality("depth")
        return modality.options.hole_fill, modality.prepare(tmp_path / "wall.depth.npy")

    (now, x_now), (before, x_before) = read(3), read(2)
    assert (now, before) == ("local", "mean")  # format 2 named none and meant the default of its day
    assert not torch.allclose(x_now, x_before)  # and the hole reads differently
    assert read(2, hole_fill="local")[0] == "local" and read(3, hole_fill="mean")[0] == "mean"  # named: kept
    read(2)
    resaved = BindingModel.load(folder).save(tmp_path / "resaved")
    options = json.loads((resaved / CONFIG).read_text())["bind"]["modalities"][2]["options"]
    assert options["hole_fill"] == "mean"  # re-saved at format 3, the old default is written down


# ---------------------------------------------------------------- the anchor


@pytest.fixture(scope="module")
def anchor_dir(model, tmp_path_factory) -> Path:
    return save_anchor_dir(model.anchor, tmp_path_factory.mktemp("anchor") / "tiny")


def _anchor_outputs(anchor):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 64, 64, generator=g)
    tokens = anchor.tokenize(["a handwritten seven", "the digit three", "a photo of a dog"])
    return anchor.encode_image(images), anchor.encode_text(tokens)


@pytest.mark.parametrize("how", ["local_dir", "pretrained_file"])
def test_saved_anchor_reloads_identically(model, anchor_dir, how):
    if how == "local_dir":
        cfg = AnchorConfig(model=f"local-dir:{anchor_dir}")
    else:
        cfg = AnchorConfig(model="anybind-tiny", pretrained=str(anchor_dir / LOCAL_WEIGHTS))
    reloaded = load_anchor(cfg)
    (img_a, txt_a), (img_b, txt_b) = _anchor_outputs(model.anchor), _anchor_outputs(reloaded)
    assert torch.equal(img_a, img_b) and torch.equal(txt_a, txt_b)
    fresh = load_anchor(AnchorConfig(model="anybind-tiny"))  # random weights: a different space
    assert not torch.allclose(_anchor_outputs(fresh)[0], img_a, atol=1e-3)
    assert not any(p.requires_grad for p in reloaded.parameters())


def test_unknown_pretrained_tag_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    for model_name in ("anybind-tiny", "ViT-B-32"):
        with pytest.raises(AnchorError, match="no_such_tag_v0"):
            load_anchor(AnchorConfig(model=model_name, pretrained="no_such_tag_v0", cache_dir=str(tmp_path)))
    assert time.monotonic() - start < 5.0


def test_known_tag_offline_and_not_cached_explains_what_to_do(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(AnchorError, match="offline") as info:
        load_anchor(AnchorConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path)))
    assert time.monotonic() - start < 30.0
    assert "local-dir" in str(info.value) and "laion2b_s34b_b79k" in str(info.value)


def test_unknown_architecture_is_an_anchor_error():
    with pytest.raises(AnchorError, match="unknown anchor architecture 'ViT-Z-99'"):
        load_anchor(AnchorConfig(model="ViT-Z-99"))
    with pytest.raises(AnchorError, match="local-dir"):
        load_anchor(AnchorConfig(model="local-dir:/nonexistent/anchor/folder"))


def test_anchor_stays_frozen_in_train_mode(files):
    model = BindingModel(_config(["depth", "imu"]))
    model.train()
    assert model.training and model.tokenizers.training and model.heads.training
    assert not model.anchor.training
    assert not any(m.training for m in model.anchor.modules())
    assert not any(p.requires_grad for p in model.anchor.parameters())
    assert model.trunk.shared and not model.trunk.training  # the default trunk is the anchor's own blocks
    assert all(p.requires_grad for p in model.tokenizers.parameters())
    model.anchor.train(True)
    assert not model.anchor.training


@pytest.mark.parametrize("damage, message", [
    (lambda p: {**p, "bind": {**p["bind"], "modalities": p["bind"]["modalities"] + p["bind"]["modalities"][:1]}},
     r"modality 'image' is listed twice"),
    (lambda p: {**p, "flavour": 1}, r"unknown config.json key\(s\) 'flavour'"),
    (lambda p: {**p, "bind": {**p["bind"], "modalities": [{**p["bind"]["modalities"][0], "colour": "red"}]}},
     r"bind.modalities\[0\]: unknown key 'colour'"),
    (lambda p: {**p, "bind": {**p["bind"], "modalities": [{**p["bind"]["modalities"][0],
                                                           "head": {"logit_scale": "hot"}}]}},
     r"bind.modalities\[0\].head: logit_scale must be a number \(float\), got 'hot'"),
    (lambda p: {**p, "bind": {**p["bind"], "trunk": {**p["bind"]["trunk"], "norm_eps": float("nan")}}},
     r"bind.trunk: norm_eps must be a finite number, got nan"),
    (lambda p: {**p, "bind": {**p["bind"], "seed": "3"}}, r"bind: seed must be an integer \(int\), got '3'"),
    (lambda p: {**p, "bind": {**p["bind"], "anchor": {**p["bind"]["anchor"], "size": 1}}},
     r"bind.anchor: unknown key 'size'"),
    (lambda p: {**p, "format_version": True}, "unsupported model format True"),
], ids=["duplicate", "top_level_key", "modality_key", "head_type", "nan", "seed_type", "anchor_key", "bool_version"])
def test_malformed_configs_are_refused_naming_the_key(saved, tmp_path, damage, message):
    folder = _fresh_copy(saved, tmp_path / "bad")
    payload = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps(damage(payload)))
    with pytest.raises(CheckpointError, match=message):
        BindingModel.load(folder)
    with pytest.raises(CheckpointError, match=message):
        BindingModel.load(folder, modalities=["imu"])


def test_configs_made_in_code_are_checked_too():
    from binder.errors import ConfigError

    with pytest.raises(ConfigError, match="modality 'imu' is listed twice"):
        BindConfig(modalities=(ModalityConfig("imu"), ModalityConfig("imu")))
    with pytest.raises(ConfigError, match=r"width must be an integer \(int\), got '256'"):
        TrunkConfig(width="256")
    with pytest.raises(ConfigError, match="options.scale must be a finite number, got inf"):
        ModalityConfig("imu", {"scale": float("inf")})
    assert TrunkConfig(mlp_ratio=2).mlp_ratio == 2.0 and isinstance(TrunkConfig(mlp_ratio=2).mlp_ratio, float)


def test_a_saved_model_writes_out_every_option_so_a_changed_default_cannot_change_it(tmp_path):
    """config.json holds each modality's options in full, defaults included: a later default (here
    the flow stream's magnitude channel, off in this model) cannot change what the folder means.
    A folder that lacks an option (saved by an older release) and whose weights then do not fit
    gets an error that says what to try."""
    options = {**SMALL["video"], "flow_magnitude": False}
    folder = tmp_path / "old"
    BindingModel(BindConfig(modalities=(ModalityConfig("two_stream", options),))).save(folder)
    payload = json.loads((folder / CONFIG).read_text())
    options = payload["bind"]["modalities"][0]["options"]
    assert options["flow_magnitude"] is False and options["flow_scale"] == 20.0 and options["fusion"] == "late"
    assert BindingModel.load(folder).modality("two_stream").input_shape()[0] == 5
    del options["flow_magnitude"]  # as a release before the option existed wrote it
    (folder / CONFIG).write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="older anybind.*Folders saved by older releases"):
        BindingModel.load(folder)
