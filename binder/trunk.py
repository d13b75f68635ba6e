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
import torch.nn.functional as F
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


class BiasKVAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention(add_bias_kv=True, batch_first=True)`` (ImageBind's attention) with a leaner
    self-attention path: same parameters, same state dict, same result (up to float rounding; it is
    bit for bit the reference ImageBind's, whose sequence-first layout fuses the in-projection bias too).

    torch's own fast path does not take a learned extra key/value, and its general path
    transposes a batch-first input to (N, B, width) and back, which costs a layout copy, a matrix
    product without fused bias, and a copy of q/k/v and of the heads' output each block. Here q/k/v
    stay views of the one in-projection, only k and v are copied (to append the extra key/value),
    and the heads' output is already (B, N, width) for the out-projection. Cross-attention, key
    padding masks, causal masks and attention weights take torch's path.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__(embed_dim, num_heads, add_bias_kv=True, batch_first=True)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (need_weights or is_causal or key_padding_mask is not None or query.dim() != 3
                or not (query is key and key is value)):
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        return self._self_attention(query, attn_mask), None

    def _self_attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, n, width = x.shape
        heads = self.num_heads
        qkv = F.linear(x, cast(torch.Tensor, self.in_proj_weight), self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)  # B, heads, N, d
        k = torch.cat([k, self._per_head(cast(torch.Tensor, self.bias_k), b)], dim=2)
        v = torch.cat([v, self._per_head(cast(torch.Tensor, self.bias_v), b)], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(attn_mask, b, n, x.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, width))

    def _per_head(self, bias: torch.Tensor, b: int) -> torch.Tensor:
        """The learned (1, 1, width) extra key or value as one more position of every head: (B, heads, 1, d)."""
        return bias.view(1, 1, self.num_heads, -1).transpose(1, 2).expand(b, -1, -1, -1)

    def _mask(self, attn_mask: torch.Tensor | None, b: int, n: int, dtype: torch.dtype) -> torch.Tensor | None:
        """``attn_mask`` ((N, N) or (B·heads, N, N), boolean True = hidden or additive) as an additive
        (1 | B, 1 | heads, N, N + 1) mask; the extra key is never hidden."""
        if attn_mask is None:
            return None
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill(
                attn_mask, float("-inf"))
        mask = attn_mask.to(dtype).reshape(-1, self.num_heads if attn_mask.dim() == 3 else 1, n, n)
        return F.pad(mask, (0, 1))


class InplaceGELU(nn.GELU):
    """``nn.GELU`` that overwrites its input when no gradient is wanted.

    In a transformer MLP its input is the fresh (tokens, 4·width) output of the first linear layer,
    read by nothing else; computing in place saves allocating (and page-faulting) the largest
    tensor of the block again. With autograd on, it is plain ``nn.GELU``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        return torch.ops.aten.gelu_(x, approximate=self.approximate)  # aten's op: torch.nn has no in-place GELU


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
    act_layer = InplaceGELU if act_layer is nn.GELU else act_layer
    blocks = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio, act_layer=act_layer,
                         norm_layer=norm).resblocks
    if cfg.add_bias_kv:
        for block in blocks:
            block.attn = BiasKVAttention(cfg.width, cfg.heads)
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
