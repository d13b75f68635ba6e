"""binder.train.optim: one optimizer recipe and one schedule, used by every training loop."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from binder.train.optim import BETAS, EPS, adamw, schedule, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]


def test_warmup_is_linear_then_a_half_cosine_reaches_zero_at_the_end():
    assert [warmup_cosine(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 4, 20) == 1.0
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(25, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(8, 4, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_the_scheduler_follows_the_factor_and_adamw_uses_clips_settings():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = adamw([w], lr=0.1, weight_decay=0.2)
    assert opt.defaults["betas"] == BETAS and opt.defaults["eps"] == EPS and opt.defaults["weight_decay"] == 0.2
    sched = schedule(opt, 2, 10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 * warmup_cosine(s, 2, 10) for s in range(10)])


def test_no_training_loop_builds_its_own_optimizer_or_schedule():
    for path in (ROOT / "binder").rglob("*.py"):
        if path.name == "optim.py":
            continue
        text = path.read_text()
        assert "optim.AdamW(" not in text and "LambdaLR(" not in text, path
