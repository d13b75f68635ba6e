"""Frozen dataclasses that describe a binding model; they round-trip through plain JSON.

Every field is checked against its annotation when a config is made (``check_fields``): a value
of the wrong type, NaN or infinity, an unknown key or a modality listed twice is a ConfigError
that names the key and what it must be, whether the config comes from a recipe, ``--set`` or a
model folder's ``config.json``. Options fields made with ``file_option`` name a file a modality
reads when it is built (the speech-units codebook); a saved model folder carries a copy of each
(``binder.checkpoint``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, cast

from binder.errors import ConfigError

FILE_OPTION = "anybind.file"  # dataclass field metadata key of an options field that names a file
PATH_OPTION = "anybind.path"  # metadata key of an augmentation field that names a file or folder

# How a loaded model computes (binder.precision): as trained (fp32), in half precision on a GPU
# (fp16, bf16), or int8 (faster on a CPU); "auto" is bf16 on a GPU that has it, else fp16 on a GPU,
# fp32 on the CPU. Here, not in binder.precision, so that the command line offers the choice
# without importing torch. An exported graph is fp32 or int8 (EXPORT_PRECISIONS).
INFERENCE_PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
EXPORT_PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class AnchorConfig:
    """The frozen open_clip model whose embedding space every modality is bound to.

    ``model`` is an open_clip architecture name (``ViT-B-32``, ``anybind-tiny``) or a
    ``local-dir:/path`` holding ``open_clip_config.json`` + weights. ``pretrained`` is an
    open_clip tag (``laion2b_s34b_b79k``), a local checkpoint file, or None for random weights.
    """

    model: str = "anybind-tiny"
    pretrained: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TrunkConfig:
    """The shared encoder every non-anchor modality runs through.

    ``kind="anchor"`` reuses the anchor's visual transformer blocks (Meta-Transformer);
    ``kind="standalone"`` builds a fresh transformer of ``width``/``layers``/``heads``.
    ``trainable_blocks`` unfreezes the last k blocks; ``lora_rank`` > 0 adds LoRA to the
    attention projections. Any trainable trunk is a copy, so the anchor never changes.
    ``norm_eps``, ``pre_norm`` (a LayerNorm before the first block) and ``add_bias_kv`` (a learned
    extra key/value in every attention) shape a standalone trunk; ImageBind's use 1e-6 and bias_kv.
    """

    kind: str = "anchor"
    trainable_blocks: int = 0
    lora_rank: int = 0
    lora_alpha: float = 8.0
    width: int = 256
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    pre_norm: bool = True
    add_bias_kv: bool = False

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind not in ("anchor", "standalone"):
            raise ConfigError(f"TrunkConfig.kind must be 'anchor' or 'standalone', got {self.kind!r}")
        if self.trainable_blocks < 0 or self.lora_rank < 0:
            raise ConfigError("TrunkConfig.trainable_blocks and lora_rank must be >= 0")
        if self.mlp_ratio <= 0 or self.norm_eps <= 0:
            raise ConfigError("TrunkConfig.mlp_ratio and norm_eps must be > 0")


POOLS = ("cls", "mean", "attention")  # HeadConfig.pool (and stream_pool's values)


@dataclass(frozen=True)
class HeadConfig:
    """Pooling + projection into the anchor space, with the modality's logit scale (1/temperature).

    ``stream_pool`` lets one stream of a multi-stream modality pool its own way (``{flow = "mean"}``
    beside ``pool = "attention"``): a stream warm-started from another binding keeps that binding's
    pooling while a fresh stream takes the one that suits it."""

    pool: str = "cls"
    logit_scale: float = 1 / 0.07
    learn_logit_scale: bool = True
    init_from_anchor: bool = True
    norm_eps: float = 1e-5
    stream_dropout: float = 0.0  # multi-stream modalities, training only: rows that use one stream alone
    stream_pool: Mapping[str, str] = field(default_factory=dict)  # multi-stream: a stream's own pooling

    def __post_init__(self) -> None:
        check_fields(self)
        for key, pool in (("pool", self.pool), *((f"stream_pool.{s}", p) for s, p in self.stream_pool.items())):
            if pool not in POOLS:
                raise ConfigError(f"HeadConfig.{key} must be cls, mean or attention, got {pool!r}")
        if not 0 <= self.stream_dropout < 1:
            raise ConfigError(f"HeadConfig.stream_dropout must lie in [0, 1), got {self.stream_dropout}")
        if self.logit_scale <= 0:
            raise ConfigError("HeadConfig.logit_scale must be > 0")
        if self.norm_eps <= 0:
            raise ConfigError("HeadConfig.norm_eps must be > 0")


@dataclass(frozen=True)
class ModalityConfig:
    """One modality held by a model: its registry name, tokenizer/preprocess options, head.

    ``trunk`` gives the modality a transformer of its own instead of the shared one (ImageBind's
    per-modality encoders). ``output_scale`` is the fixed factor ImageBind multiplies unit
    embeddings by (its post-processing); ``encode(..., scaled=True)`` applies it.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    head: HeadConfig = field(default_factory=HeadConfig)
    trunk: TrunkConfig | None = None
    output_scale: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.name:
            raise ConfigError("a modality entry needs a name")
        if self.output_scale is not None and self.output_scale <= 0:
            raise ConfigError(f"modality {self.name!r}: output_scale must be > 0, got {self.output_scale}")
        # JSON turns tuples into lists; store sequences as tuples so a config equals its round trip
        object.__setattr__(self, "options", _freeze(dict(self.options)))


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class BindConfig:
    """Everything needed to rebuild a BindingModel before its weights are loaded."""

    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    modalities: tuple[ModalityConfig, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        seen: set[str] = set()
        for m in self.modalities:
            if m.name in seen:
                raise ConfigError(f"modality {m.name!r} is listed twice; a model holds each modality once")
            seen.add(m.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BindConfig:
        """The config of ``to_dict``'s JSON; unknown keys, wrong types and repeated modalities are
        ConfigErrors naming the key (``bind.modalities[1].head: ...``)."""
        _check_keys(cls, data, "bind")
        entries = data.get("modalities", ())
        if not isinstance(entries, (list, tuple)):
            raise ConfigError(f"bind.modalities must be a list, got {_kind(entries)}")
        mods = []
        for i, m in enumerate(entries):
            where = f"bind.modalities[{i}]"
            if not isinstance(m, Mapping):
                raise ConfigError(f"{where} must be a table (JSON object), got {_kind(m)}")
            _check_keys(ModalityConfig, m, where)
            if "name" not in m:
                raise ConfigError(f"{where}: 'name' is missing")
            trunk = m.get("trunk")
            mods.append(_section(ModalityConfig, {
                "name": m["name"], "options": m.get("options", {}),
                "head": _section(HeadConfig, m.get("head", {}), f"{where}.head"),
                "trunk": _section(TrunkConfig, trunk, f"{where}.trunk") if trunk else None,
                "output_scale": m.get("output_scale")}, where))
        return _section(cls, {"anchor": _section(AnchorConfig, data.get("anchor", {}), "bind.anchor"),
                              "trunk": _section(TrunkConfig, data.get("trunk", {}), "bind.trunk"),
                              "modalities": tuple(mods), "seed": data.get("seed", 0)}, "bind")

    def modality(self, name: str) -> ModalityConfig:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)


# ---------------------------------------------------------------- options that name files


def file_option(default: str | None = None) -> Any:
    """An options field naming a file the modality reads when its tokenizer is built (a codebook).

    ``BindingModel.save`` copies the file into the model folder and names it there relative to the
    folder; loading opens only files inside the folder.
    """
    return field(default=default, metadata={FILE_OPTION: True})


def file_options(options_cls: Any) -> tuple[str, ...]:
    """Names of the ``file_option`` fields of a modality's ``Options`` dataclass."""
    return _marked_fields(options_cls, FILE_OPTION)


def _marked_fields(options_cls: Any, key: str) -> tuple[str, ...]:
    """Names of the fields of dataclass ``options_cls`` whose metadata sets ``key`` (none for a non-dataclass)."""
    if not dataclasses.is_dataclass(options_cls):
        return ()
    return tuple(f.name for f in dataclasses.fields(options_cls) if f.metadata.get(key))


def path_option(default: str | None = None) -> Any:
    """An augmentation field naming a file or folder it reads while training (a noise folder): a
    recipe's relative value resolves against the recipe's folder, as its other paths do."""
    return field(default=default, metadata={PATH_OPTION: True})


def path_options(options_cls: Any) -> tuple[str, ...]:
    """Names of the ``path_option`` fields of an ``AugmentOptions`` dataclass."""
    return _marked_fields(options_cls, PATH_OPTION)


# ---------------------------------------------------------------- checking values against annotations

_NO = object()  # "this value is not of that type"


def check_fields(obj: Any) -> None:
    """Every field of the dataclass instance ``obj`` holds a value of its annotated type.

    ``int`` excludes ``bool``; a ``float`` field takes an int (stored as a float) and must be
    finite; a ``tuple[X, ...]`` field takes a list (stored as a tuple); NaN and infinity are refused
    inside tables and lists too. A mismatch is a ConfigError naming the field and the type it must be.
    """
    hints = _hints(cast(Hashable, type(obj)))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = check_value(value, hints.get(f.name, Any), f.name)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def check_value(value: Any, hint: Any, key: str) -> Any:
    """``value`` as a value of type ``hint`` (see ``check_fields``), or a ConfigError naming ``key``."""
    out = _match(value, hint, key)
    if out is _NO:
        raise ConfigError(f"{key} must be {describe_type(hint)}, got {value!r} ({_kind(value)})")
    return out


@functools.cache
def _hints(cls: Hashable) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _match(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _finite(value, key)
    if origin is Union or origin is types.UnionType:
        if value is None:
            return None if type(None) in args else _NO
        for arm in args:
            if arm is not type(None) and (out := _match(value, arm, key)) is not _NO:
                return out
        return _NO
    if hint is type(None):
        return None if value is None else _NO
    if hint is bool:
        return value if isinstance(value, bool) else _NO
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _NO
        return _finite(float(value), key)
    if hint is str:
        return value if isinstance(value, str) else _NO
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return _NO
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if args and len(args) != len(value):
                return _NO
            arms = args or (Any,) * len(value)
            items = [check_value(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, arms))]
        else:
            arg = args[0] if args else Any
            items = [check_value(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            return _NO
        arg = args[1] if len(args) == 2 else Any
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(f"{key} must be a table with string keys, got the key {k!r}")
        return {k: check_value(v, arg, f"{key}.{k}") for k, v in value.items()}
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _NO
    return value  # an annotation this checker does not know: left to the class


def _finite(value: Any, key: str, depth: int = 0) -> Any:
    """``value``, or a ConfigError if it is (or holds, in lists and tables) NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if depth < 32 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, f"{key}[{i}]", depth + 1)
    elif depth < 32 and isinstance(value, Mapping):
        for k, v in value.items():
            _finite(v, f"{key}.{k}", depth + 1)
    return value


def describe_type(hint: Any) -> str:
    """How a message says what a value of type ``hint`` must be: ``a number (float)``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        arms = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(arms) + (" or nothing (None)" if type(None) in args else "")
    if origin in (tuple, list):
        inner = f" of {describe_type(args[0])}" if args and (len(args) == 1 or args[1] is Ellipsis) else ""
        return f"a list{inner}"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a table (dict)"
    names = {bool: "true or false (bool)", int: "an integer (int)", float: "a number (float)", str: "a string (str)"}
    if hint in names:
        return names[hint]
    return f"a {getattr(hint, '__name__', hint)}"


def _kind(value: Any) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a string", list: "a list", tuple: "a list",
            dict: "a table", type(None): "nothing"}.get(type(value), type(value).__name__)


def _check_keys(cls: type, data: Any, where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table (JSON object), got {_kind(data)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(known))})")


def _section(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with unknown keys and bad values reported as ConfigErrors that name ``where``."""
    _check_keys(cls, data, where)
    try:
        return cls(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
