"""Building blocks for modality tokenizers: patch/tubelet/linear stems plus CLS and positions.

Every tokenizer ends in ``SequenceEmbedding``, which prepends a learned CLS token and adds a
learned position embedding, so the trunk and the heads see the same layout for every modality.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from binder.errors import ConfigError


class StreamTokens(NamedTuple):
    """What a multi-stream tokenizer returns: one ``(B, 1 + N, width)`` sequence per stream, in the
    order of the modality's ``streams``. Each runs through the trunk on its own and its own head
    pools it; a ``binder.heads.FusionHead`` then fuses the pooled vectors (late fusion)."""

    streams: tuple[torch.Tensor, ...]


def _trunc_normal(shape: tuple[int, ...], std: float = 0.02) -> nn.Parameter:
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(shape), std=std))


class SequenceEmbedding(nn.Module):
    """Prepend a CLS token and add position embeddings to ``(B, N, width)`` tokens.

    ``positions=False`` is for stems that already placed their tokens (factorized space-time
    positions of tubelets): only the CLS token is added then.
    """

    def __init__(self, num_tokens: int, width: int, positions: bool = True):
        super().__init__()
        self.num_tokens = num_tokens
        self.cls = _trunc_normal((1, 1, width))
        self.pos = _trunc_normal((1, num_tokens + 1, width)) if positions else None

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None):
        cls = self.cls.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        if self.pos is not None:
            x = x + self.pos
        if pad_mask is None:
            return x
        keep_cls = torch.zeros(pad_mask.shape[0], 1, dtype=torch.bool, device=pad_mask.device)
        return x, torch.cat([keep_cls, pad_mask], dim=1)


class PatchTokens2d(nn.Module):
    """Conv2d patches of a (B, C, H, W) raster → (B, 1 + N, width); stride < kernel overlaps (AST)."""

    def __init__(self, in_chans: int, width: int, input_hw: tuple[int, int], patch: int, stride: int | None = None,
                 norm: bool = True):
        super().__init__()
        stride = stride or patch
        self.proj = nn.Conv2d(in_chans, width, kernel_size=patch, stride=stride, bias=False)
        self.grid = tuple((s - patch) // stride + 1 for s in input_hw)
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.seq = SequenceEmbedding(math.prod(self.grid), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.seq(self.norm(x))


class TubeletTokens(nn.Module):
    """Conv3d tubelets of a (B, C, T, H, W) clip, with factorized spatial + temporal positions."""

    def __init__(self, in_chans: int, width: int, input_thw: tuple[int, int, int], tubelet: tuple[int, int, int],
                 norm: bool = True):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, width, kernel_size=tubelet, stride=tubelet, bias=False)
        self.grid = tuple(s // k for s, k in zip(input_thw, tubelet))
        if 0 in self.grid:
            raise ConfigError(f"input {input_thw} is smaller than one tubelet {tubelet}")
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.temporal = _trunc_normal((1, self.grid[0], 1, width))
        self.spatial = _trunc_normal((1, 1, self.grid[1] * self.grid[2], width))
        self.num_tokens = math.prod(self.grid)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens with positions but without CLS: (B, T'·H'·W', width)."""
        x = self.proj(x)  # B, W, T', H', W'
        b, w, t = x.shape[:3]
        x = x.flatten(3).permute(0, 2, 3, 1)  # B, T', H'W', W
        x = self.norm(x) + self.temporal + self.spatial
        return x.reshape(b, -1, w)


class LinearTokens(nn.Module):
    """Non-overlapping windows of a (B, C, T) signal → Linear → (B, 1 + T/k, width) (ImageBind IMU)."""

    def __init__(self, in_chans: int, width: int, length: int, kernel: int, norm: bool = True):
        super().__init__()
        if length % kernel:
            raise ConfigError(f"signal length {length} is not a multiple of the window {kernel}")
        self.kernel = kernel
        self.proj = nn.Linear(in_chans * kernel, width, bias=False)
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.seq = SequenceEmbedding(length // kernel, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        x = x.unfold(-1, self.kernel, self.kernel)  # B, C, N, k
        x = x.permute(0, 2, 1, 3).reshape(b, t // self.kernel, c * self.kernel)
        return self.seq(self.norm(self.proj(x)))
