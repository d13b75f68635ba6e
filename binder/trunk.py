"""The shared transformer trunk every non-anchor modality runs through.

By default it *is* the anchor's visual transformer (LayerNorm + blocks), reused as-is and frozen
(the Meta-Transformer idea). Unfreezing blocks or adding LoRA works on a copy, so the anchor
itself never changes. A standalone trunk is a fresh transformer for presets that need one.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import cast

import torch
from open_clip.transformer import LayerNorm, Transformer
from torch import nn
from torch.nn.utils import parametrize

from binder.config import TrunkConfig


class LoRA(nn.Module):
    """Parametrization W → W + (B @ A) · alpha / rank, with B zero-initialized (starts as identity)."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.B @ self.A) * self.scale


class Trunk(nn.Module):
    """(B, N, width) tokens → (B, N, width) features, with an optional (B, N) padding mask."""

    def __init__(self, ln_pre: nn.Module, blocks: nn.ModuleList, width: int, shared: bool):
        super().__init__()
        self.ln_pre = ln_pre
        self.blocks = blocks
        self.width = width
        self.shared = shared

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None, layers: int | None = None) -> torch.Tensor:
        """The features after all blocks, or after the first ``layers`` (hidden features, for units)."""
        attn_mask = None if pad_mask is None else self._attention_mask(pad_mask, x.dtype)
        x = self.ln_pre(x)
        for block in list(self.blocks)[:layers]:
            x = block(x, attn_mask=attn_mask)
        return x

    def _attention_mask(self, pad_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive (B·heads, N, N) mask that hides padded keys from every query."""
        heads = cast(nn.MultiheadAttention, self.blocks[0].attn).num_heads
        b, n = pad_mask.shape
        mask = torch.zeros(b, 1, 1, n, dtype=dtype, device=pad_mask.device)
        mask = mask.masked_fill(pad_mask[:, None, None, :], float("-inf"))
        return mask.expand(b, heads, n, n).reshape(b * heads, n, n)


def build_trunk(cfg: TrunkConfig, anchor_visual: nn.Module | None) -> Trunk:
    """The trunk ``cfg`` asks for, reusing ``anchor_visual``'s blocks when ``cfg.kind == "anchor"``."""
    if cfg.kind == "standalone":
        return standalone_trunk(cfg)
    if anchor_visual is None or not hasattr(anchor_visual, "transformer"):
        raise ValueError("an 'anchor' trunk needs an anchor with a ViT image tower (VisionTransformer)")
    transformer = cast(Transformer, anchor_visual.transformer)
    ln_pre, blocks = cast(nn.Module, anchor_visual.ln_pre), cast(nn.ModuleList, transformer.resblocks)
    shared = cfg.trainable_blocks == 0 and cfg.lora_rank == 0
    if not shared:
        ln_pre, blocks = copy.deepcopy(ln_pre), copy.deepcopy(blocks)
    trunk = Trunk(ln_pre, blocks, transformer.width, shared=shared)
    for p in trunk.parameters():
        p.requires_grad_(False)
    if cfg.trainable_blocks:
        for block in list(trunk.blocks)[-cfg.trainable_blocks:]:
            for p in block.parameters():
                p.requires_grad_(True)
    _add_lora(trunk, cfg)
    return trunk


def standalone_trunk(cfg: TrunkConfig, act_layer: type[nn.Module] = nn.GELU) -> Trunk:
    """A fresh pre-LN transformer; ``add_bias_kv`` swaps in attention with a learned extra key/value.

    ``act_layer`` is the MLP activation (a copy of CLIP blocks that use QuickGELU passes it)."""
    norm = functools.partial(LayerNorm, eps=cfg.norm_eps)
    blocks = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, act_layer=act_layer,
                         norm_layer=norm).resblocks
    if cfg.add_bias_kv:
        for block in blocks:
            block.attn = nn.MultiheadAttention(cfg.width, cfg.heads, add_bias_kv=True, batch_first=True)
    ln_pre = norm(cfg.width) if cfg.pre_norm else nn.Identity()
    trunk = Trunk(ln_pre, blocks, cfg.width, shared=False)
    _add_lora(trunk, cfg)
    return trunk


def _add_lora(trunk: Trunk, cfg: TrunkConfig) -> None:
    if not cfg.lora_rank:
        return
    # LoRA's own random init must not advance the global RNG: with the same seed, the tokenizers and
    # heads built after the trunk are then identical with and without LoRA (which starts as identity).
    with torch.random.fork_rng(devices=[]):
        for block in trunk.blocks:
            attn = cast(nn.MultiheadAttention, block.attn)
            width = attn.embed_dim
            rank, alpha = cfg.lora_rank, cfg.lora_alpha
            parametrize.register_parametrization(attn, "in_proj_weight", LoRA(3 * width, width, rank, alpha))
            parametrize.register_parametrization(attn.out_proj, "weight", LoRA(width, width, rank, alpha))
