"""TOML recipes (read with tomllib) → the frozen configs the trainer and evaluator take.

Every value is checked against its field's annotation (``binder.config.check_fields``) and range
before anything is built: an unknown key, a value of the wrong type, NaN or infinity, or a
modality listed twice is a ConfigError that names the recipe, the section and the key.

Paths: a relative path written in a recipe resolves against the recipe file's folder, so a recipe
works from any working directory; one given as an override (``--set``) resolves against the
current directory, as typed. ``~`` is expanded and absolute paths are kept. This covers
``anchor.model`` (``local-dir:PATH``), ``anchor.pretrained`` (when it is a file, not a tag),
``anchor.cache_dir``, ``train.root``, ``train.out``, ``train.cache_dir``, each modality's file
options (a codebook), its augmentation's path fields (an audio ``noise_dir``) and its warm start's
``init.model``. Manifests (``[[modality]]``
train/val/test/hard, ``eval.image_gallery``, an
anchor recipe's train/test) are relative to ``train.root`` when one is set, like the paths inside
them; without a root they follow the same rule. Every resolved path is absolute.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from binder.config import (
    AnchorConfig,
    BindConfig,
    HeadConfig,
    ModalityConfig,
    TrunkConfig,
    check_fields,
    check_value,
    file_options,
    path_options,
)
from binder.errors import AnybindError, ConfigError, RegistryError
from binder.registry import get_modality
from binder.train.amp import PRECISIONS
from binder.train.loss import LOSSES, SIGLIP_SCALE, check_soft_targets
from binder.train.warm_start import parse_warm_start

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

FUSION_GATES = ("val", "learned")  # TrainConfig.fusion_gate: set on the val pairs after training, or as learned


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
    init: dict[str, Any] = field(default_factory=dict)  # a warm start (binder.train.warm_start)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.target not in ("image", "text"):
            raise ConfigError(f"modality {self.name}: target must be 'image' or 'text', got {self.target!r}")


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
        check_fields(self)
        if self.names and len(self.names) != len(self.classes):
            raise ConfigError(f"eval.names has {len(self.names)} entries for {len(self.classes)} classes")

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
    ``soft_targets`` > 0 gives InfoNCE soft labels: the anchor's similarities between the batch's
    targets at that temperature (``binder.train.loss.SoftTargetLoss``); 0 is one-hot labels.
    ``eval_every`` > 0 measures zero-shot top-1 on each modality's val manifest every that many steps
    (and at the last) into metrics.json's ``val_curve``, without changing the training; 0 is off.
    """

    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    memory_size: int = 0
    loss: str = "infonce"
    soft_targets: float = 0.0
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
    eval_every: int = 0
    fusion_gate: str = "val"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.fusion_gate not in FUSION_GATES:
            raise ConfigError(f"train.fusion_gate must be one of {', '.join(FUSION_GATES)}, got {self.fusion_gate!r}")
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("train.steps must be >= 1 and train.batch_size >= 2 (InfoNCE needs negatives)")
        if not 0 <= self.token_drop < 1:
            raise ConfigError("train.token_drop must be in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"train.lr must be > 0 (got {self.lr}) and train.weight_decay >= 0 "
                              f"(got {self.weight_decay})")
        if min(self.cache_mb, self.workers, self.threads, self.warmup_steps, self.memory_size) < 0:
            raise ConfigError("train.cache_mb, workers, threads, warmup_steps and memory_size must be >= 0")
        if self.checkpoint_every < 1:
            raise ConfigError("train.checkpoint_every must be >= 1")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every must be >= 0 (0 = off), got {self.eval_every}")
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_soft_targets(self.loss, self.soft_targets)
        if self.accumulate < 1:
            raise ConfigError("train.accumulate must be >= 1 (micro-batches per step)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class Recipe:
    bind: BindConfig
    train: TrainConfig
    modalities: tuple[BindSpec, ...]
    eval: EvalSpec
    path: str = ""


# Keys that name files or folders (see the module's docstring): relative values resolve against the
# recipe's folder, or against the current directory when they come from an override.
PATH_KEYS = {"anchor": ("model", "pretrained", "cache_dir"), "train": ("root", "out", "cache_dir")}
# Manifests: relative to train.root when a root is set (``binder.train.data.under_root``), else as above.
MANIFEST_KEYS = {"train": ("train", "val", "test"), "eval": ("image_gallery",)}
MODALITY_MANIFESTS = ("train", "val", "test", "hard")
LOCAL_DIR = "local-dir:"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def resolve_path(value: str, base: str | os.PathLike) -> str:
    """``value`` with ``~`` expanded, absolute as it is, else joined to the absolute folder ``base``."""
    path = os.path.expanduser(value)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(os.path.abspath(base), path))


def _resolve_key(section: str, key: str, value: Any, base: Path) -> Any:
    """A recipe value resolved against ``base`` when ``section.key`` names a path (see PATH_KEYS)."""
    if not isinstance(value, str) or not value:
        return value  # a wrong type is reported by the section's check, naming the key
    if (section, key) == ("anchor", "model"):  # an open_clip name, hf-hub:..., or local-dir:PATH
        return LOCAL_DIR + resolve_path(value[len(LOCAL_DIR):], base) if value.startswith(LOCAL_DIR) else value
    if (section, key) == ("anchor", "pretrained") and not _names_a_file(value, base):
        return value  # an open_clip tag ("laion2b_s34b_b79k")
    return resolve_path(value, base)


def _names_a_file(value: str, base: Path) -> bool:
    """Whether ``anchor.pretrained`` is a checkpoint file rather than an open_clip tag."""
    return (os.sep in value or "/" in value or value.startswith(("~", ".")) or value.endswith(CHECKPOINT_SUFFIXES)
            or os.path.isfile(resolve_path(value, base)))


def _path_keys(section: str, with_manifests: bool) -> tuple[str, ...]:
    return PATH_KEYS.get(section, ()) + (MANIFEST_KEYS.get(section, ()) if with_manifests else ())


def _resolve_recipe_paths(data: dict[str, Any], base: Path, with_manifests: bool) -> None:
    """Resolve, in place, every path a recipe's file writes (see the module's docstring) against ``base``."""
    for section in (*PATH_KEYS, *MANIFEST_KEYS):
        table = data.get(section)
        if isinstance(table, dict):
            for key in _path_keys(section, with_manifests):
                if key in table:
                    table[key] = _resolve_key(section, key, table[key], base)
    entries = data.get("modality")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        for key in MODALITY_MANIFESTS if with_manifests else ():
            if isinstance(entry.get(key), str):
                entry[key] = resolve_path(entry[key], base)
        init = entry.get("init")
        if isinstance(init, dict) and isinstance(init.get("model"), str) and init["model"]:
            init["model"] = resolve_path(init["model"], base)  # a binding folder, like the other paths
        modality = _registered(entry.get("name"))
        for table, keys in (("options", file_options(getattr(modality, "Options", None))),  # a codebook
                            ("augment", path_options(getattr(modality, "AugmentOptions", None)))):  # a noise folder
            values = entry.get(table)
            if not isinstance(values, dict):
                continue
            for key in keys:
                if isinstance(values.get(key), str):
                    values[key] = resolve_path(values[key], base)


def _registered(name: Any) -> type | None:
    """The registered modality class of a recipe entry's ``name``; None when it names none (the
    entry's own check then says so)."""
    try:
        return get_modality(name) if isinstance(name, str) else None
    except RegistryError:
        return None


def read_recipe_toml(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                     sections: tuple[str, ...] = ("anchor", "trunk", "train", "eval")) -> dict[str, Any]:
    """A recipe's TOML as a dict, with ``SECTION.KEY`` overrides applied to the table ``sections``.

    Paths come back absolute: those of the file resolved against its folder, those of the
    overrides against the current directory (see the module's docstring).
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AnybindError(f"{path}: cannot read recipe ({exc})") from None
    given: list[tuple[str, str, Any]] = []
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            allowed = ", ".join(f"[{s}]" for s in sections)
            raise AnybindError(f"cannot override {key!r}: only keys of {allowed} can be set")
        given.append((section, name, value))
    train = data.get("train")
    root = next((v for s, k, v in given if (s, k) == ("train", "root")),
                train.get("root") if isinstance(train, dict) else None)
    with_manifests = root is None  # under a root, manifests stay relative to it
    _resolve_recipe_paths(data, Path(os.path.abspath(path)).parent, with_manifests)
    here = Path.cwd()
    for section, name, value in given:
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path} [{section}]: must be a table, got {table!r}")
        table[name] = (_resolve_key(section, name, value, here) if name in _path_keys(section, with_manifests)
                       else value)
    return data


def load_recipe(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parse a binding recipe; unknown keys are errors that name the section.

    Relative paths in the file resolve against its folder, those in ``overrides`` against the
    current directory (see the module's docstring); the recipe's paths are absolute."""
    path = Path(path)
    data = read_recipe_toml(path, overrides)
    entries = data.get("modality", [])
    if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
        raise ConfigError(f"{path}: modality must be an array of tables ([[modality]])")
    specs = tuple(build_section(BindSpec, m, f"{path} [[modality]] {m.get('name', i + 1)}")
                  for i, m in enumerate(entries))
    if not specs:
        raise ConfigError(f"{path}: a recipe needs at least one [[modality]]")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: [[modality]] {', '.join(map(repr, twice))} is listed more than once; "
                          f"bind each modality in one entry")
    for spec in specs:
        check_options(spec, f"{path} [[modality]] {spec.name}")
        if spec.init:
            parse_warm_start(spec.init, f"{path} [[modality]] {spec.name}")
    start = {"logit_scale": SIGLIP_SCALE} if data.get("train", {}).get("loss") == "siglip" else {}
    mods = [ModalityConfig(s.name, dict(s.options), build_section(HeadConfig, {**start, **s.head}, f"{path} head"))
            for s in specs]
    if any(s.target == "image" for s in specs) and "image" not in [m.name for m in mods]:
        mods.append(ModalityConfig("image"))
    if "text" not in [m.name for m in mods]:
        mods.append(ModalityConfig("text"))
    train = build_section(TrainConfig, data.get("train", {}), f"{path} [train]")
    bind = BindConfig(anchor=build_section(AnchorConfig, data.get("anchor", {}), f"{path} [anchor]"),
                      trunk=build_section(TrunkConfig, data.get("trunk", {}), f"{path} [trunk]"),
                      modalities=tuple(mods), seed=train.seed)
    ev = data.get("eval", {})
    ev = {k: tuple(v) if isinstance(v, list) else v for k, v in ev.items()} if isinstance(ev, dict) else ev
    return Recipe(bind, train, specs, build_section(EvalSpec, ev, f"{path} [eval]"), str(path))


def check_options(spec: BindSpec, where: str) -> None:
    """A ``[[modality]]``'s ``options`` against the annotations of its modality's ``Options`` (types,
    NaN/inf, unknown keys), before anything is built; a modality not registered is left to the model."""
    try:
        options_cls = get_modality(spec.name).Options
    except RegistryError:
        return
    if not dataclasses.is_dataclass(options_cls):
        return
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(spec.options) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(fields))})")
    try:
        hints = typing.get_type_hints(options_cls)
    except Exception:  # annotations a plugin only names for type checkers: its own __post_init__ checks
        hints = {}
    for key, value in spec.options.items():
        try:
            check_value(value, hints.get(key, Any), f"options.{key}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def build_section(cls: type[T], values: Any, where: str) -> T:
    """A config dataclass from one TOML section; unknown keys and bad values are ConfigErrors naming
    ``where`` and the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: must be a table, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
