"""Per-modality heads: pool the trunk's tokens and project them into the anchor's space."""
from __future__ import annotations

import dataclasses
import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from binder.config import HeadConfig
from binder.errors import ConfigError

MAX_LOGIT_SCALE = 100.0
MIN_WEIGHT = 1e-6  # a fusion gate's smallest weight: a stream set to 0 keeps this (the gate is a softmax)


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


def fuse(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The fused unit vectors of stream vectors ``stacked`` (streams, rows, dim): their sum weighted
    by ``weights`` (one per stream), renormalized."""
    return F.normalize((stacked * weights.to(stacked.dtype).view(-1, 1, 1)).sum(0), dim=-1)


class FusionHead(nn.Module):
    """Late fusion of a multi-stream modality: one ``Head`` per stream pools and projects that
    stream's trunk output to a unit vector, and a learned gate (softmax weights) sums them, renormalized.

    Each stream keeps a vector of its own in the shared space, so the fused one starts as any mix of
    them: a gate that puts all weight on one stream gives exactly that stream's embedding, and
    ``only`` (set by ``BindingModel.single_stream``) reads one stream alone, for measuring it.

    ``stream_dropout`` (training only): that share of the rows uses one randomly chosen stream
    alone, so every stream is also trained to be a binding by itself (modality dropout); without
    it the strongest stream carries the loss and the others learn little.
    """

    def __init__(self, width: int, embed_dim: int, cfg: HeadConfig, streams: tuple[str, ...]):
        super().__init__()
        if len(streams) < 2 or len(set(streams)) != len(streams):
            raise ValueError(f"a fusion head needs at least two distinct streams, got {streams}")
        self.streams = tuple(streams)
        unknown = sorted(set(cfg.stream_pool) - set(streams))
        if unknown:
            raise ConfigError(f"head.stream_pool names {', '.join(map(repr, unknown))}, not a stream of this "
                              f"modality (streams: {', '.join(streams)})")
        self.heads = nn.ModuleDict({s: Head(width, embed_dim, dataclasses.replace(
            cfg, pool=cfg.stream_pool.get(s, cfg.pool), stream_pool={})) for s in streams})
        for head in self.heads.values():  # the fused embedding has one temperature: this head's own
            head.log_logit_scale.requires_grad_(False)
        self.gate = nn.Parameter(torch.zeros(len(streams)))
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale)),
                                            requires_grad=cfg.learn_logit_scale)
        self.only: str | None = None
        self.stream_dropout = cfg.stream_dropout

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp of the learned log scale, capped like CLIP's at 100."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def weights(self) -> dict[str, float]:
        """The gate's current weight of each stream (they sum to 1)."""
        return dict(zip(self.streams, self.gate.detach().float().softmax(0).tolist()))

    def set_weight(self, stream: str, weight: float) -> None:
        """Set the gate so ``stream`` has ``weight`` (in (0, 1)) and the others share the rest equally."""
        if stream not in self.streams or not 0 < weight < 1:
            raise ValueError(f"stream must be one of {self.streams} and weight in (0, 1), got {stream!r}, {weight}")
        rest = (1 - weight) / (len(self.streams) - 1)
        self.set_weights({s: weight if s == stream else rest for s in self.streams})

    def set_weights(self, weights: dict[str, float]) -> None:
        """Set the whole gate: ``weights`` (one per stream, non-negative, summing to 1). A weight of 0
        is kept at 1e-6 of the sum (the gate is a softmax), which leaves that stream no say."""
        if set(weights) != set(self.streams) or min(weights.values()) < 0 or not math.isclose(
                sum(weights.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must give each of {self.streams} a share >= 0, summing to 1; got {weights}")
        with torch.no_grad():
            self.gate.copy_(torch.tensor([math.log(max(weights[s], MIN_WEIGHT)) for s in self.streams]))

    def init_from_anchor(self, visual: nn.Module) -> bool:
        """Every stream's head from the anchor's ln_post + proj (``Head.init_from_anchor``)."""
        return all([cast(Head, h).init_from_anchor(visual) for h in self.heads.values()])

    def draw_solo(self, rows: int, generator: torch.Generator | None,
                  window: tuple[int, int] | None = None) -> torch.Tensor | None:
        """Per row, the stream it uses alone (-1: the fused vector), drawn for ``stream_dropout``.

        Drawn for the whole batch and ``window = (start, total)``'s rows taken, as token drop does,
        so a batch split across ranks or micro-batches draws what the whole batch would."""
        if not self.training or self.stream_dropout <= 0:
            return None
        start, total = window or (0, rows)
        u = torch.rand(total, 2, generator=generator)[start:start + rows]
        pick = (u[:, 1] * len(self.streams)).long().clamp(max=len(self.streams) - 1)
        return torch.where(u[:, 0] < self.stream_dropout, pick, torch.full_like(pick, -1))

    def forward(self, xs: list[torch.Tensor], pad_masks: list[torch.Tensor | None] | None = None,
                solo: torch.Tensor | None = None) -> torch.Tensor:
        masks = pad_masks or [None] * len(xs)
        zs = [cast(Head, self.heads[s])(x, m) for s, x, m in zip(self.streams, xs, masks)]
        if self.only is not None:
            return zs[self.streams.index(self.only)]
        stacked = torch.stack(zs)  # streams, rows, dim
        fused = fuse(stacked, self.gate.softmax(0))
        if solo is None:
            return fused
        solo = solo.to(fused.device)
        alone = stacked.gather(0, solo.clamp(min=0).view(1, -1, 1).expand(1, *fused.shape))[0]
        return torch.where((solo >= 0).view(-1, 1), alone, fused)
