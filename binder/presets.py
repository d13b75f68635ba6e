"""Named model architectures: ImageBind's (to load its released weights) and Meta-Transformer's.

A preset is a function returning a ``BindConfig``; ``register_preset`` adds one and
``preset_config(name)`` builds it. Presets describe structure only: weights come from the anchor's
pretrained tag, from ``anybind convert imagebind``, or from training.

ImageBind (Girdhar et al., 2023) gives every modality its own transformer and binds it to a frozen
OpenCLIP ViT-H/14, whose image and text towers are the anchor here. Each non-anchor encoder is
a pre-LN transformer (LayerNorm eps 1e-6, a learned extra key/value in attention), a CLS head
(LayerNorm → Linear without bias) and a fixed output scale: audio 20, depth 5, thermal 10, IMU 5.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from binder.config import AnchorConfig, BindConfig, HeadConfig, ModalityConfig, TrunkConfig
from binder.errors import RegistryError

_PRESETS: dict[str, Callable[[], BindConfig]] = {}


def register_preset(name: str) -> Callable[[Callable[[], BindConfig]], Callable[[], BindConfig]]:
    """Decorator: make a ``() -> BindConfig`` function available as preset ``name``."""
    def wrap(fn: Callable[[], BindConfig]) -> Callable[[], BindConfig]:
        _PRESETS[name] = fn
        return fn
    return wrap


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def preset_summary(name: str) -> str:
    """First line of the preset's docstring."""
    return (_PRESETS[name].__doc__ or "").strip().splitlines()[0]


def preset_config(name: str, pretrained: str | None | EllipsisType = ..., cache_dir: str | None = None) -> BindConfig:
    """The ``BindConfig`` of preset ``name``; ``pretrained`` replaces the anchor's weights tag
    (``None`` = random anchor weights, e.g. offline or before ``anybind convert``)."""
    try:
        cfg = _PRESETS[name]()
    except KeyError:
        raise RegistryError(f"unknown preset {name!r}; known: {', '.join(list_presets())}") from None
    anchor = cfg.anchor
    if pretrained is not ...:
        anchor = dataclasses.replace(anchor, pretrained=pretrained)
    if cache_dir is not None:
        anchor = dataclasses.replace(anchor, cache_dir=cache_dir)
    return dataclasses.replace(cfg, anchor=anchor)


@dataclass(frozen=True)
class EncoderShape:
    """Width, depth and heads of one ImageBind modality encoder."""

    width: int
    layers: int
    heads: int


# ImageBind's preprocessing, where it differs from anybind's defaults: the left channel of stereo
# audio and torchaudio's resampler; IMU in physical units; depth and thermal 224 × 224, 16 × 16 patches.
IMAGEBIND_OPTIONS: dict[str, dict[str, Any]] = {
    "audio": {"channel": "first", "resampler": "torchaudio", "patch": 16, "stride": 10, "trim_silence": False,
              "clip_select": "even"},
    "depth": {"image_size": 224, "patch": 16},
    "thermal": {"image_size": 224, "patch": 16},
    "imu": {"channels": 6, "length": 2000, "kernel": 8, "normalize": "none"},
}
IMAGEBIND_SCALES = {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
TEXT_SCALE_INIT = 1 / 0.07  # ImageBind's text logit scale is learned from this start; convert reads it


def imagebind_config(anchor_model: str, shapes: dict[str, EncoderShape]) -> BindConfig:
    """ImageBind's structure around an open_clip anchor: one encoder per non-anchor modality."""
    mods = [ModalityConfig("image"), ModalityConfig("text", output_scale=TEXT_SCALE_INIT)]
    for name, shape in shapes.items():
        trunk = TrunkConfig(kind="standalone", width=shape.width, layers=shape.layers, heads=shape.heads,
                            norm_eps=1e-6, pre_norm=False, add_bias_kv=True)
        scale = IMAGEBIND_SCALES[name]
        head = HeadConfig(pool="cls", logit_scale=scale, learn_logit_scale=False, init_from_anchor=False,
                          norm_eps=1e-6)
        mods.append(ModalityConfig(name, IMAGEBIND_OPTIONS[name], head, trunk, output_scale=scale))
    return BindConfig(anchor=AnchorConfig(model=anchor_model), modalities=tuple(mods))


@register_preset("imagebind-huge")
def imagebind_huge() -> BindConfig:
    """ImageBind-Huge: OpenCLIP ViT-H/14 anchor (1024-d space); load weights with ``anybind convert imagebind``."""
    return imagebind_config("imagebind-huge", {
        "audio": EncoderShape(768, 12, 12), "depth": EncoderShape(384, 12, 8),
        "thermal": EncoderShape(768, 12, 12), "imu": EncoderShape(512, 6, 8)})


@register_preset("imagebind-test")
def imagebind_test() -> BindConfig:
    """ImageBind's structure at toy widths (same layout, tokens and preprocessing) for fast checks."""
    return imagebind_config("imagebind-test", {
        "audio": EncoderShape(32, 2, 2), "depth": EncoderShape(24, 2, 2),
        "thermal": EncoderShape(32, 2, 2), "imu": EncoderShape(32, 2, 2)})


@register_preset("meta-transformer-b16")
def meta_transformer_b16() -> BindConfig:
    """Meta-Transformer: one frozen ViT-B/16 encoder shared by every modality, anybind's tokenizers in front.

    The encoder is open_clip's ViT-B-16 visual transformer (LAION-2B weights by default), reused
    as-is; each modality adds only its tokenizer and head.
    """
    from binder.registry import list_modalities

    mods = tuple(ModalityConfig(name) for name in list_modalities())
    return BindConfig(anchor=AnchorConfig(model="ViT-B-16", pretrained="laion2b_s34b_b88k"),
                      trunk=TrunkConfig(kind="anchor"), modalities=mods)
