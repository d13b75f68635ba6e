"""The anchor's text transformer runs sequence-first and still computes the same embeddings."""
import copy

import torch
from torch import nn

from binder.anchor import sequence_first_text
from binder.model import BindingModel


def _batch_first_copy(clip: nn.Module) -> nn.Module:
    twin = copy.deepcopy(clip)
    twin.transformer.batch_first = True
    for block in twin.transformer.resblocks:
        block.attn.batch_first = True
    return twin


def test_text_tower_is_switched_and_agrees_with_batch_first():
    anchor = BindingModel.default(["image"]).anchor
    clip = anchor.clip
    assert clip.transformer.batch_first is False
    assert all(b.attn.batch_first is False for b in clip.transformer.resblocks)
    tokens = anchor.tokenize(["a photo of a dog", "the digit seven", "rain on a street at night"])
    twin = _batch_first_copy(clip)
    with torch.inference_mode():
        ours, theirs = clip.encode_text(tokens), twin.encode_text(tokens)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())
    assert sequence_first_text(twin) is True and twin.transformer.batch_first is False


def test_switch_leaves_unknown_structures_alone():
    assert sequence_first_text(nn.Linear(3, 3)) is False
    clip = _batch_first_copy(BindingModel.default(["image"]).anchor.clip)
    clip.transformer.resblocks[0].attn = nn.Identity()  # not an nn.MultiheadAttention any more
    assert sequence_first_text(clip) is False
    assert clip.transformer.batch_first is True
