"""TOML recipes (read with tomllib) → the frozen configs the trainer and evaluator take."""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from binder.config import AnchorConfig, BindConfig, HeadConfig, ModalityConfig, TrunkConfig
from binder.errors import AnybindError
from binder.train.amp import PRECISIONS
from binder.train.loss import LOSSES, SIGLIP_SCALE

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True)
class BindSpec:
    """One modality to bind: its manifests and what it is bound to ("image" or "text")."""

    name: str
    train: str
    val: str | None = None
    test: str | None = None
    hard: str | None = None
    target: str = "image"
    options: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] | bool = True

    def __post_init__(self) -> None:
        if self.target not in ("image", "text"):
            raise AnybindError(f"modality {self.name}: target must be 'image' or 'text', got {self.target!r}")


@dataclass(frozen=True)
class EvalSpec:
    """Zero-shot classes (index = integer label, or the label string itself), the prompt templates
    ("{}" = the class's name), optional ``names`` to put in the prompts instead of the labels, and
    an image manifest to measure retrieval against."""

    classes: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("{}",)
    names: tuple[str, ...] = ()
    image_gallery: str | None = None

    def __post_init__(self) -> None:
        if self.names and len(self.names) != len(self.classes):
            raise ValueError(f"eval.names has {len(self.names)} entries for {len(self.classes)} classes")

    @property
    def prompt_names(self) -> tuple[str, ...]:
        return self.names or self.classes


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of a binding: AdamW + linear warmup + cosine decay, seeded, checkpointed.

    ``batch_size`` is the global batch: under torchrun each rank encodes its share and the loss
    sees every rank's rows, so a recipe trains the same binding on any number of ranks.
    ``accumulate`` splits each rank's share into that many micro-batches with the same loss and
    gradient (less memory, same negatives). ``device`` is auto (a rank's GPU when there is one),
    cpu or cuda; ``precision`` is auto (bf16, else fp16, on GPUs; fp32 on CPUs), fp32, bf16 or fp16.
    """

    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    memory_size: int = 0
    loss: str = "infonce"
    token_drop: float = 0.0
    checkpoint_every: int = 100
    workers: int = 2
    threads: int = 0
    stream: bool = True
    cache_mb: float = 1024.0
    root: str | None = None
    out: str = "out/binding"
    cache_dir: str = ".cache/anybind"
    device: str = "auto"
    precision: str = "auto"
    accumulate: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise AnybindError("train.steps must be >= 1 and train.batch_size >= 2 (InfoNCE needs negatives)")
        if not 0 <= self.token_drop < 1:
            raise AnybindError("train.token_drop must be in [0, 1)")
        if self.cache_mb < 0 or self.workers < 0:
            raise AnybindError("train.cache_mb and train.workers must be >= 0")
        if self.loss not in LOSSES:
            raise AnybindError(f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.accumulate < 1:
            raise AnybindError("train.accumulate must be >= 1 (micro-batches per step)")
        if self.precision not in PRECISIONS:
            raise AnybindError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class Recipe:
    bind: BindConfig
    train: TrainConfig
    modalities: tuple[BindSpec, ...]
    eval: EvalSpec
    path: str = ""


def read_recipe_toml(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                     sections: tuple[str, ...] = ("anchor", "trunk", "train", "eval")) -> dict[str, Any]:
    """A recipe's TOML as a dict, with ``SECTION.KEY`` overrides applied to the table ``sections``."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AnybindError(f"{path}: cannot read recipe ({exc})") from None
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            allowed = ", ".join(f"[{s}]" for s in sections)
            raise AnybindError(f"cannot override {key!r}: only keys of {allowed} can be set")
        data.setdefault(section, {})[name] = value
    return data


def load_recipe(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parse a binding recipe; unknown keys are errors that name the section."""
    path = Path(path)
    data = read_recipe_toml(path, overrides)
    specs = tuple(build_section(BindSpec, m, f"{path} [[modality]]") for m in data.get("modality", []))
    if not specs:
        raise AnybindError(f"{path}: a recipe needs at least one [[modality]]")
    start = {"logit_scale": SIGLIP_SCALE} if data.get("train", {}).get("loss") == "siglip" else {}
    mods = [ModalityConfig(s.name, dict(s.options), build_section(HeadConfig, {**start, **s.head}, f"{path} head"))
            for s in specs]
    if any(s.target == "image" for s in specs) and "image" not in [m.name for m in mods]:
        mods.append(ModalityConfig("image"))
    if "text" not in [m.name for m in mods]:
        mods.append(ModalityConfig("text"))
    bind = BindConfig(anchor=build_section(AnchorConfig, data.get("anchor", {}), f"{path} [anchor]"),
                      trunk=build_section(TrunkConfig, data.get("trunk", {}), f"{path} [trunk]"),
                      modalities=tuple(mods), seed=int(data.get("train", {}).get("seed", 0)))
    ev = dict(data.get("eval", {}))
    ev = {k: tuple(v) if isinstance(v, list) else v for k, v in ev.items()}
    return Recipe(bind, build_section(TrainConfig, data.get("train", {}), f"{path} [train]"), specs,
                  build_section(EvalSpec, ev, f"{path} [eval]"), str(path))


def build_section(cls: type[T], values: dict[str, Any], where: str) -> T:
    """A config dataclass from one TOML section; unknown keys and bad values are errors naming ``where``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise AnybindError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise AnybindError(f"{where}: {exc}") from None
