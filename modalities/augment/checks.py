"""Checks every augmentation options dataclass runs in ``__post_init__``: ranges and probabilities.

A bad value is a ValueError naming the option, raised when a recipe is read, not mid-training.
"""
from __future__ import annotations

import math

from binder.errors import ConfigError


def check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """``value`` as a finite ``(low, high)`` float pair with ``low <= high``; ValueError naming ``name`` otherwise."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{name} must be a finite (low, high) pair with low <= high, got {value!r}")
    return low, high


def check_probability(name: str, value: float) -> None:
    """ValueError naming ``name`` unless ``value`` lies in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} is a probability and must lie in [0, 1], got {value}")
