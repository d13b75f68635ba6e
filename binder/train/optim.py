"""The optimizer and learning-rate schedule every training loop here uses, written once.

AdamW with CLIP's betas (0.9, 0.98) and eps 1e-6, and a schedule that warms up linearly over
``warmup`` steps, then decays along a half cosine to zero at ``total``: the binding trainer and the
anchor trainer both take them, so a change to either reaches both.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

BETAS = (0.9, 0.98)
EPS = 1e-6


def adamw(params: Iterable[Any], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW over ``params`` (tensors or param-group dicts, which may set their own weight decay)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=BETAS, eps=EPS)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: (step + 1) / warmup while warming up, then a half cosine
    from 1 at the end of warmup to 0 at ``total`` (and 0 after it)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` as a scheduler stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total))
