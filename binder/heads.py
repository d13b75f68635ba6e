"""Per-modality heads: pool the trunk's tokens and project them into the anchor's space."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from binder.config import HeadConfig

MAX_LOGIT_SCALE = 100.0


class Head(nn.Module):
    """LayerNorm → pool (CLS / mean / attention) → linear projection → L2 norm, plus a logit scale."""

    def __init__(self, width: int, embed_dim: int, cfg: HeadConfig):
        super().__init__()
        self.pool = cfg.pool
        self.norm = nn.LayerNorm(width, eps=cfg.norm_eps)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        if cfg.pool == "attention":
            self.query = nn.Parameter(torch.zeros(1, 1, width))
            self.attn = nn.MultiheadAttention(width, max(1, width // 64), batch_first=True)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale)),
                                            requires_grad=cfg.learn_logit_scale)

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp of the learned log scale, capped like CLIP's at 100."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def init_from_anchor(self, visual: nn.Module) -> bool:
        """Start from the anchor's own ln_post + proj when shapes agree (a good first guess)."""
        ln, proj = getattr(visual, "ln_post", None), getattr(visual, "proj", None)
        if ln is None or proj is None or tuple(proj.shape) != tuple(self.proj.weight.T.shape):
            return False
        with torch.no_grad():
            self.norm.load_state_dict(ln.state_dict())
            self.proj.weight.copy_(proj.T)
        return True

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pool == "cls":  # LayerNorm acts per token: normalizing the CLS token alone is the same
            return F.normalize(self.proj(self.norm(x[:, 0])), dim=-1)
        return F.normalize(self.proj(self._pool(self.norm(x), pad_mask)), dim=-1)

    def _pool(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "mean":
            body = x[:, 1:]
            if pad_mask is None:
                return body.mean(dim=1)
            keep = (~pad_mask[:, 1:]).unsqueeze(-1).to(x.dtype)
            return (body * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        query = self.query.expand(x.shape[0], -1, -1)
        out, _ = self.attn(query, x, x, key_padding_mask=pad_mask, need_weights=False)
        return out[:, 0]
