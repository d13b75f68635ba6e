"""Named, fixed-strength perturbations of test data: how robust is a binding to one condition?

``anybind eval ... --perturb "snr=10,silence=1.5"`` applies each named perturbation, at the value
given, to every decoded test item before preprocessing. Unlike training augmentation nothing is
drawn at random except where the perturbation itself is noise; that noise comes from a generator
seeded by the item's row, so a perturbed evaluation is repeatable. The names belong to the
modality (``Modality.perturbations``, so a plugin declares its own); this module parses the spec
and applies the steps. An unknown name is an error that lists the modality's known ones.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from binder.errors import AnybindError
from binder.registry import get_modality
from modalities.base import Modality, Perturber


@dataclass(frozen=True)
class Perturbation:
    """An ordered list of (name, value) applied to one modality's decoded items."""

    modality: str
    steps: tuple[tuple[str, float], ...]
    table: Mapping[str, Perturber] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, raw: Any, row: int, modality: Any) -> Any:
        """``raw`` with every step applied in order; ``modality`` (the instance evaluated, or None)
        is passed to each step for its options."""
        rng = np.random.default_rng([zlib.crc32(self.spec.encode()), row])
        for name, value in self.steps:
            raw = self.table[name].apply(raw, value, rng, modality)
        return raw

    @property
    def spec(self) -> str:
        return ",".join(f"{n}={v:g}" for n, v in self.steps)


def parse_perturbation(spec: str, modality: str | Modality) -> Perturbation:
    """``"snr=10,silence=1.5"`` for ``modality`` (a registered name, or an instance) → a Perturbation
    of the names that modality declares; errors list them."""
    mod = get_modality(modality)() if isinstance(modality, str) else modality
    table = dict(mod.perturbations())
    if not table:
        raise AnybindError(f"no perturbations for modality {mod.name!r} (it declares none)")
    steps = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, raw = part.partition("=")
        if name not in table:
            known = "; ".join(f"{k} ({p.doc})" for k, p in table.items())
            raise AnybindError(f"unknown perturbation {name!r} for {mod.name}; known: {known}")
        try:
            value = float(raw)
        except ValueError:
            raise AnybindError(f"perturbation {part!r}: give a number, as {name}=VALUE") from None
        if not sep or not np.isfinite(value):
            raise AnybindError(f"perturbation {part!r}: give a finite number, as {name}=VALUE")
        steps.append((name, value))
    if not steps:
        raise AnybindError(f"empty perturbation spec {spec!r}")
    return Perturbation(mod.name, tuple(steps), table)
