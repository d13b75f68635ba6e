"""Named presets: Meta-Transformer's shared ViT-B/16 trunk, and the preset registry itself."""
from __future__ import annotations

import pytest
import torch
from samplegen import MAKERS

from binder.errors import AnchorError, RegistryError
from binder.model import BindingModel
from binder.presets import list_presets, preset_config


@pytest.fixture(scope="module")
def meta_b16():
    return BindingModel.from_preset("meta-transformer-b16", pretrained=None)


def test_meta_transformer_trunk_is_the_anchor_vit_b16(meta_b16):
    visual = meta_b16.anchor.visual
    assert meta_b16.trunk.blocks is visual.transformer.resblocks  # shared, not copied
    assert meta_b16.trunk.width == 768 and len(meta_b16.trunk.blocks) == 12
    assert visual.patch_size == (16, 16) and meta_b16.embed_dim == 512
    assert not any(p.requires_grad for p in meta_b16.trunk.parameters())
    assert not meta_b16.trunks  # no modality has an encoder of its own


def test_meta_transformer_embeds_every_modality_through_the_one_trunk(meta_b16, tmp_path):
    calls = []
    hook = meta_b16.trunk.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        for name in ("depth", "imu", "thermal"):
            z = meta_b16.embed_files(name, [MAKERS[name](tmp_path, 0), MAKERS[name](tmp_path, 1)])
            assert z.shape == (2, 512) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    finally:
        hook.remove()
    assert len(calls) == 3


def test_meta_transformer_default_weights_are_the_laion_tag():
    cfg = preset_config("meta-transformer-b16")
    assert (cfg.anchor.model, cfg.anchor.pretrained) == ("ViT-B-16", "laion2b_s34b_b88k")
    with pytest.raises(AnchorError, match="laion2b_s34b_b88k"):
        BindingModel(preset_config("meta-transformer-b16", cache_dir="/nonexistent-cache"))


def test_imagebind_presets_give_each_modality_its_own_encoder():
    model = BindingModel.from_preset("imagebind-test")
    assert set(model.trunks) == {"audio", "depth", "thermal", "imu"}
    assert model.trunks["depth"].width == 24 and model.trunks["audio"].width == 32
    assert model.trunks["audio"].blocks[0].attn.bias_k is not None  # ImageBind's learned extra key/value
    huge = preset_config("imagebind-huge")
    widths = {m.name: m.trunk.width for m in huge.modalities if m.trunk}
    assert widths == {"audio": 768, "depth": 384, "thermal": 768, "imu": 512}


def test_unknown_preset_names_the_known_ones():
    assert {"imagebind-huge", "imagebind-test", "meta-transformer-b16"} <= set(list_presets())
    with pytest.raises(RegistryError, match="imagebind-huge"):
        preset_config("imagebind-giant")
