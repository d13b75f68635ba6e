"""Padding masks, pooling, clip averaging, LoRA and unfrozen blocks of the shared trunk."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from binder.config import BindConfig, HeadConfig, ModalityConfig, TrunkConfig
from binder.heads import Head
from binder.model import BindingModel

SMALL = {
    "depth": dict(image_size=32, patch=8),
    "imu": dict(length=256, kernel=8),
    "timeseries": dict(length=64, patch=8, max_channels=4),
    "speech_units": dict(max_frames=200, max_units=64),
    "audio": dict(clips=2),
}
ATOL = 1e-6


def _config(trunk: TrunkConfig | None = None, seed: int = 0, pool: str = "cls") -> BindConfig:
    return BindConfig(trunk=trunk or TrunkConfig(), seed=seed,
                      modalities=tuple(ModalityConfig(n, options=o, head=HeadConfig(pool=pool))
                                       for n, o in SMALL.items()))


@pytest.fixture(scope="module")
def model() -> BindingModel:
    return BindingModel(_config()).eval()


def _series(real_channels: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 4, 64), float("nan"))
    x[:, :real_channels] = torch.randn(1, real_channels, 64, generator=g)
    return x


def _speech(real_frames: int = 120) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.full((1, 200, 39), float("nan"))
    # slowly varying features, so that consecutive frames often share a unit and dedup has work to do
    x[:, :real_frames] = torch.randn(1, real_frames // 6, 39, generator=g).repeat_interleave(6, dim=1)
    return x


@torch.no_grad()
def test_timeseries_padding_values_do_not_change_the_embedding(model):
    m = copy.deepcopy(model)
    x = _series(2)
    base = m.encode("timeseries", x)
    tok = m.tokenizers["timeseries"]
    tokens, mask = tok(x)
    assert mask[0, 1 + 2 * 8:].all() and not mask[0, : 1 + 2 * 8].any()  # channels 2 and 3 are padding
    g = torch.Generator().manual_seed(2)
    tok.channel[2:] = 5 * torch.randn(tok.channel[2:].shape, generator=g)  # embeddings of the absent channels
    tok.seq.pos[:, 1 + 2 * 8:] = 5 * torch.randn(tok.seq.pos[:, 1 + 2 * 8:].shape, generator=g)
    new_tokens, _ = tok(x)
    assert not torch.allclose(new_tokens[:, mask[0]], tokens[:, mask[0]])  # padded tokens really changed
    torch.testing.assert_close(m.encode("timeseries", x), base, atol=ATOL, rtol=0)
    # without the mask the trunk and head would see them
    unmasked = m.heads["timeseries"](m.trunk(new_tokens))
    assert not torch.allclose(unmasked, base, atol=1e-4)
    tok.channel[0] += torch.randn(tok.channel[0].shape, generator=g)  # a real channel's embedding does matter
    assert not torch.allclose(m.encode("timeseries", x), base, atol=1e-4)


@torch.no_grad()
def test_timeseries_absent_channels_are_nan_rows_only(model):
    x2, x3 = _series(2), _series(2)
    x3[:, 2] = 0.0  # a zero channel is data, not padding
    e2, e3 = model.encode("timeseries", x2), model.encode("timeseries", x3)
    assert not torch.allclose(e2, e3, atol=1e-4)
    _, mask = model.tokenizers["timeseries"](x3)
    assert not mask[0, : 1 + 3 * 8].any() and mask[0, 1 + 3 * 8:].all()


@torch.no_grad()
def test_speech_units_padding_does_not_change_the_embedding(model):
    m = copy.deepcopy(model)
    x = _speech(120)
    base = m.encode("speech_units", x)
    tok = m.tokenizers["speech_units"]
    tokens, mask = tok(x)
    real = int((~mask[0]).sum())
    assert 2 < real < 65 and mask[0, real:].all()
    # NaN padding rows in the middle are skipped like those at the end (and repeats still merge)
    gap = torch.full((1, 200, 39), float("nan"))
    gap[:, :60], gap[:, 90:150] = x[:, :60], x[:, 60:120]
    torch.testing.assert_close(m.encode("speech_units", gap), base, atol=ATOL, rtol=0)
    # the pad unit's embedding and the positions of padded slots are never seen
    g = torch.Generator().manual_seed(3)
    tok.embed.weight[tok.pad_id] = 5 * torch.randn(tok.embed.weight.shape[1], generator=g)
    tok.seq.pos[:, real:] = 5 * torch.randn(tok.seq.pos[:, real:].shape, generator=g)
    torch.testing.assert_close(m.encode("speech_units", x), base, atol=ATOL, rtol=0)
    tok.seq.pos[:, 1:real] += torch.randn(tok.seq.pos[:, 1:real].shape, generator=g)  # real positions matter
    assert not torch.allclose(m.encode("speech_units", x), base, atol=1e-4)


@torch.no_grad()
def test_trunk_masked_equals_trunk_on_the_unpadded_sequence(model):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 12, 64, generator=g)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 7:] = True
    out = model.trunk(x, mask)
    torch.testing.assert_close(out[0, :7], model.trunk(x[:1, :7])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], model.trunk(x[1:])[0], atol=1e-5, rtol=0)
    y = x.clone()
    y[0, 7:] = 100 * torch.randn(5, 64, generator=g)
    torch.testing.assert_close(model.trunk(y, mask)[0, :7], out[0, :7], atol=1e-5, rtol=0)
    assert not torch.allclose(model.trunk(y)[0, :7], model.trunk(x)[0, :7], atol=1e-3)  # unmasked: they leak in


@pytest.mark.parametrize("pool", ["mean", "attention"])
@torch.no_grad()
def test_pooling_ignores_padded_tokens(pool):
    torch.manual_seed(5)
    head = Head(64, 32, HeadConfig(pool=pool)).eval()
    if pool == "attention":
        head.query.normal_()  # a non-trivial query (it starts at zero, i.e. uniform attention)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 10, 64, generator=g)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 6:] = True
    out = head(x, mask)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0], head(x[:1, :6])[0], atol=ATOL, rtol=0)  # as if the padding were absent
    torch.testing.assert_close(out[1], head(x[1:])[0], atol=ATOL, rtol=0)
    if pool == "mean":  # mean of the non-CLS, non-padded tokens
        ref = F.normalize(head.proj(head.norm(x[0, 1:6]).mean(dim=0)), dim=-1)
        torch.testing.assert_close(out[0], ref, atol=ATOL, rtol=0)
    y = x.clone()
    y[0, 6:] = 50 * torch.randn(4, 64, generator=g)
    torch.testing.assert_close(head(y, mask), out, atol=ATOL, rtol=0)
    assert not torch.allclose(head(y)[0], head(x)[0], atol=1e-4)  # without the mask the padding counts
    y[0, 3] += 3 * torch.randn(64, generator=g)
    assert not torch.allclose(head(y, mask)[0], out[0], atol=1e-4)  # a real token counts


@torch.no_grad()
def test_mean_pool_model_ignores_timeseries_padding():
    m = BindingModel(_config(pool="mean")).eval()
    x = _series(2)
    base = m.encode("timeseries", x)
    m.tokenizers["timeseries"].channel[2:] += 3 * torch.randn(2, 1, 64)
    torch.testing.assert_close(m.encode("timeseries", x), base, atol=ATOL, rtol=0)


@torch.no_grad()
def test_identical_clips_embed_like_one_clip(model):
    g = torch.Generator().manual_seed(7)
    one = torch.randn(2, 1, 1, 128, 204, generator=g)
    single = model.encode("audio", one)
    for k in (2, 3):
        torch.testing.assert_close(model.encode("audio", one.expand(2, k, 1, 128, 204).contiguous()), single,
                                   atol=ATOL, rtol=0)
    # different clips: the normalized mean of the clip embeddings
    clips = torch.randn(2, 2, 1, 128, 204, generator=g)
    per_clip = torch.stack([model.encode("audio", clips[:, i:i + 1]) for i in range(2)], dim=1)
    torch.testing.assert_close(model.encode("audio", clips), F.normalize(per_clip.mean(dim=1), dim=-1),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(per_clip[:, 0], per_clip[:, 1], atol=1e-3)


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(8)
    return {"depth": torch.randn(2, 1, 32, 32, generator=g), "imu": torch.randn(2, 6, 256, generator=g),
            "timeseries": torch.cat([_series(2), _series(3)]), "speech_units": torch.cat([_speech(120), _speech(84)])}


@torch.no_grad()
def test_lora_starts_as_identity(model):
    lora = BindingModel(_config(TrunkConfig(lora_rank=2))).eval()
    assert any(".B" in k for k in lora.state_dict())
    for name in ("tokenizers", "heads"):  # LoRA's own init does not shift the seeded init of the rest
        sa, sb = getattr(model, name).state_dict(), getattr(lora, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for name, x in _inputs().items():
        torch.testing.assert_close(lora.encode(name, x), model.encode(name, x), atol=ATOL, rtol=0)
    for k, p in lora.trunk.named_parameters():  # moving B off zero changes the output: LoRA is in the forward path
        if k.endswith(".B"):
            p.normal_(std=0.5)
    x = _inputs()["depth"]
    assert not torch.allclose(lora.encode("depth", x), model.encode("depth", x), atol=1e-4)
    assert torch.equal(lora.anchor.clip.visual.transformer.resblocks[0].attn.in_proj_weight,
                       model.anchor.clip.visual.transformer.resblocks[0].attn.in_proj_weight)


def test_trainable_blocks_unfreezes_exactly_the_last_block():
    m = BindingModel(_config(TrunkConfig(trainable_blocks=1)))
    blocks = m.trunk.blocks
    assert len(blocks) == 2 and blocks is not m.anchor.visual.transformer.resblocks and not m.trunk.shared
    trainable = {k for k, p in m.trunk.named_parameters() if p.requires_grad}
    assert trainable == {f"blocks.1.{k}" for k, _ in blocks[1].named_parameters()}
    assert not any(p.requires_grad for p in m.anchor.parameters())
    # same values as the anchor's last block, but separate tensors
    ours, theirs = blocks[1].mlp.c_fc.weight, m.anchor.visual.transformer.resblocks[1].mlp.c_fc.weight
    assert torch.equal(ours, theirs) and ours.data_ptr() != theirs.data_ptr()

    m.train()
    x = _inputs()["imu"]
    m.encode("imu", x)[:, 0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blocks[1].parameters())
    assert all(p.grad is None for p in blocks[0].parameters())
    assert all(p.grad is None for p in m.trunk.ln_pre.parameters())
    assert all(p.grad is None for p in m.anchor.parameters())
    assert m.tokenizers["imu"].proj.weight.grad is not None


def test_frozen_and_lora_only_trunks_train_nothing_else():
    shared = BindingModel(_config())
    assert shared.trunk.shared and not any(p.requires_grad for p in shared.trunk.parameters())
    lora = BindingModel(_config(TrunkConfig(lora_rank=2)))
    trainable = {k for k, p in lora.trunk.named_parameters() if p.requires_grad}
    assert trainable and all(k.endswith((".A", ".B")) for k in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 blocks x (in_proj, out_proj) x (A, B)


def _bias_kv_trunks(seed: int = 5):
    """An ImageBind-style trunk (learned extra key/value) and a copy running torch's own attention and GELU."""
    from torch import nn

    from binder.trunk import standalone_trunk

    torch.manual_seed(seed)
    lean = standalone_trunk(TrunkConfig(kind="standalone", width=32, layers=2, heads=4, norm_eps=1e-6,
                                        pre_norm=False, add_bias_kv=True))
    with torch.no_grad():
        for p in lean.parameters():  # bias_k/bias_v start at zero: make every tensor count
            p.add_(0.1 * torch.randn(p.shape))
    plain = copy.deepcopy(lean)
    for block in plain.blocks:
        attn = nn.MultiheadAttention(32, 4, add_bias_kv=True, batch_first=True)
        attn.load_state_dict(block.attn.state_dict())
        block.attn, block.mlp.gelu = attn, nn.GELU()
    return lean, plain


@pytest.mark.parametrize("train", [False, True])
def test_bias_kv_trunk_equals_torch_attention(train):
    """The lean self-attention and in-place GELU give torch's result, padding mask and gradients too."""
    lean, plain = (t.train(train) for t in _bias_kv_trunks())
    x = torch.randn(3, 9, 32, requires_grad=True)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, 5:] = True
    for pad in (None, mask):
        ours, theirs = lean(x, pad), plain(x, pad)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
        grads = [torch.autograd.grad(out.square().sum(), x)[0] for out in (ours, theirs)]
        torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=0)
    with torch.inference_mode():
        torch.testing.assert_close(lean(x.detach(), mask), plain(x.detach(), mask), atol=1e-5, rtol=0)
        assert lean.blocks[0].attn(x, x, x, need_weights=True)[1].shape == (3, 9, 10)  # weights: torch's path


def test_inplace_gelu_overwrites_only_without_autograd():
    from binder.trunk import InplaceGELU

    x = torch.randn(4, 8, requires_grad=True)
    y = InplaceGELU()(x)  # autograd on: a new tensor, the input untouched
    assert y.data_ptr() != x.data_ptr()
    torch.testing.assert_close(y, F.gelu(x))
    with torch.inference_mode():
        h = x.detach().clone()
        assert InplaceGELU()(h).data_ptr() == h.data_ptr()
        torch.testing.assert_close(h, F.gelu(x.detach()))
