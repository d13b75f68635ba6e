"""Frozen dataclasses that describe a binding model; they round-trip through plain JSON."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# How a loaded model computes (binder.precision): as trained, or int8 (faster on a CPU). Here, not in
# binder.precision, so that the command line offers the choice without importing torch.
INFERENCE_PRECISIONS = ("fp32", "int8")


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
        if self.kind not in ("anchor", "standalone"):
            raise ValueError(f"TrunkConfig.kind must be 'anchor' or 'standalone', got {self.kind!r}")
        if self.trainable_blocks < 0 or self.lora_rank < 0:
            raise ValueError("TrunkConfig.trainable_blocks and lora_rank must be >= 0")


@dataclass(frozen=True)
class HeadConfig:
    """Pooling + projection into the anchor space, with the modality's logit scale (1/temperature)."""

    pool: str = "cls"
    logit_scale: float = 1 / 0.07
    learn_logit_scale: bool = True
    init_from_anchor: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.pool not in ("cls", "mean", "attention"):
            raise ValueError(f"HeadConfig.pool must be cls, mean or attention, got {self.pool!r}")
        if self.logit_scale <= 0:
            raise ValueError("HeadConfig.logit_scale must be > 0")


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BindConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BindConfig keys: {sorted(unknown)}")
        mods = tuple(
            ModalityConfig(
                name=m["name"],
                options=dict(m.get("options", {})),
                head=HeadConfig(**m.get("head", {})),
                trunk=TrunkConfig(**m["trunk"]) if m.get("trunk") else None,
                output_scale=m.get("output_scale"),
            )
            for m in data.get("modalities", ())
        )
        return cls(
            anchor=AnchorConfig(**data.get("anchor", {})),
            trunk=TrunkConfig(**data.get("trunk", {})),
            modalities=mods,
            seed=int(data.get("seed", 0)),
        )

    def modality(self, name: str) -> ModalityConfig:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)
