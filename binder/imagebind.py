"""Convert ImageBind's released state dict (``imagebind_huge.pth``) into an anybind model folder.

The ``.pth`` file is a pickle. It is opened with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers and refuses anything else, so a file that needs more than
that is rejected rather than executed. A ``.safetensors`` copy of the same state dict is read
directly.

Every ImageBind tensor has one place in the ``imagebind-huge`` (or ``imagebind-test``) preset:
the vision and text encoders become the open_clip anchor, the others become per-modality
tokenizers, trunks and heads. Two tensors change form: the vision stem's Conv3d over a 2-frame
repeated image equals a Conv2d whose kernel is the sum over its time axis, and ``nn.Linear``
projections become open_clip's transposed ``proj`` matrices.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch

from binder.checkpoint import check_safetensors
from binder.errors import CheckpointError
from binder.presets import preset_config

Transform = Callable[[torch.Tensor], torch.Tensor]
_SAME: Transform = lambda t: t  # noqa: E731
_BLOCK_PARTS = {"norm_1": "ln_1", "norm_2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_SCALED = ("audio", "depth", "thermal", "imu")

# (ImageBind key pattern, anybind key template, transform); "{block}" renames a transformer block part.
RULES: list[tuple[str, str, Transform]] = [
    (r"modality_preprocessors\.vision\.cls_token", "anchor.clip.visual.class_embedding", lambda t: t.reshape(-1)),
    (r"modality_preprocessors\.vision\.rgbt_stem\.proj\.1\.weight", "anchor.clip.visual.conv1.weight",
     lambda t: t.sum(dim=2)),
    (r"modality_preprocessors\.vision\.pos_embedding_helper\.pos_embed", "anchor.clip.visual.positional_embedding",
     lambda t: t[0]),
    (r"modality_trunks\.vision\.pre_transformer_layer\.0\.(weight|bias)", r"anchor.clip.visual.ln_pre.\1", _SAME),
    (r"modality_trunks\.vision\.blocks\.(\d+)\.(.+)", r"anchor.clip.visual.transformer.resblocks.\1.{block}", _SAME),
    (r"modality_heads\.vision\.0\.(weight|bias)", r"anchor.clip.visual.ln_post.\1", _SAME),
    (r"modality_heads\.vision\.2\.weight", "anchor.clip.visual.proj", lambda t: t.T),
    (r"modality_preprocessors\.text\.token_embedding\.weight", "anchor.clip.token_embedding.weight", _SAME),
    (r"modality_preprocessors\.text\.pos_embed", "anchor.clip.positional_embedding", lambda t: t[0]),
    (r"modality_trunks\.text\.blocks\.(\d+)\.(.+)", r"anchor.clip.transformer.resblocks.\1.{block}", _SAME),
    (r"modality_heads\.text\.proj\.0\.(weight|bias)", r"anchor.clip.ln_final.\1", _SAME),
    (r"modality_heads\.text\.proj\.1\.weight", "anchor.clip.text_projection", lambda t: t.T),
    (r"modality_postprocessors\.text\.1\.log_logit_scale", "anchor.clip.logit_scale", _SAME),
    (r"modality_preprocessors\.(audio|thermal)\.rgbt_stem\.proj\.weight", r"tokenizers.\1.proj.weight", _SAME),
    (r"modality_preprocessors\.depth\.depth_stem\.proj\.weight", "tokenizers.depth.proj.weight", _SAME),
    (r"modality_preprocessors\.(audio|depth|thermal)\.(?:rgbt|depth)_stem\.norm_layer\.(weight|bias)",
     r"tokenizers.\1.norm.\2", _SAME),
    (r"modality_preprocessors\.imu\.imu_stem\.proj\.weight", "tokenizers.imu.proj.weight", _SAME),
    (r"modality_preprocessors\.imu\.imu_stem\.norm_layer\.(weight|bias)", r"tokenizers.imu.norm.\1", _SAME),
    (r"modality_preprocessors\.(audio|depth|thermal|imu)\.cls_token", r"tokenizers.\1.seq.cls", _SAME),
    (r"modality_preprocessors\.(audio|depth|thermal)\.pos_embedding_helper\.pos_embed", r"tokenizers.\1.seq.pos",
     _SAME),
    (r"modality_preprocessors\.imu\.pos_embed", "tokenizers.imu.seq.pos", _SAME),
    (r"modality_trunks\.(audio|depth|thermal|imu)\.blocks\.(\d+)\.(.+)", r"trunks.\1.blocks.\2.{block}", _SAME),
    (r"modality_heads\.(audio|depth|thermal)\.0\.(weight|bias)", r"heads.\1.norm.\2", _SAME),
    (r"modality_heads\.(audio|depth|thermal)\.2\.weight", r"heads.\1.proj.weight", _SAME),
    (r"modality_heads\.imu\.0\.(weight|bias)", r"heads.imu.norm.\1", _SAME),
    (r"modality_heads\.imu\.3\.weight", "heads.imu.proj.weight", _SAME),
    (r"modality_postprocessors\.(audio|depth|thermal|imu)\.1\.log_logit_scale", r"heads.\1.log_logit_scale", _SAME),
]
_COMPILED = [(re.compile(p + r"\Z"), t, f) for p, t, f in RULES]
SKIPPED = (re.compile(r"modality_preprocessors\.text\.mask\Z"),)  # the causal mask: open_clip builds its own


def target_key(key: str) -> tuple[str, Transform] | None:
    """The anybind parameter an ImageBind key maps to, with its transform (None = not ImageBind's)."""
    for pattern, template, fn in _COMPILED:
        m = pattern.match(key)
        if m:
            if template.endswith("{block}"):
                last = cast(int, m.lastindex)  # every {block} pattern has groups
                return m.expand(template[: -len("{block}")]) + _block_part(m.group(last)), fn
            return m.expand(template), fn
    return None


def _block_part(part: str) -> str:
    for old, new in _BLOCK_PARTS.items():
        if part.startswith(old + "."):
            return new + part[len(old):]
    return part


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of an ImageBind checkpoint, loaded without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a plain tensor checkpoint; it is only opened with "
                              f"torch.load(weights_only=True), which refused it ({first})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors state dict; a truncated or malformed file is a CheckpointError, not a traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None


def convert_state_dict(state: dict[str, torch.Tensor], preset: str = "imagebind-huge"):
    """A ``BindingModel`` of ``preset`` holding ImageBind's weights (every tensor placed, shapes checked)."""
    from binder.model import BindingModel

    text_scale = state.get("modality_postprocessors.text.1.log_logit_scale")
    model = BindingModel(_config_with_scales(preset_config(preset, pretrained=None), state))
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    placed, unknown = set(), []
    for key, value in state.items():
        if any(p.match(key) for p in SKIPPED):
            continue
        target = target_key(key)
        if target is None or target[0] not in params:
            unknown.append(key)
            continue
        name, fn = target
        _assign(params[name], fn(value), key, name, preset)
        placed.add(name)
    missing = [n for n, _ in model.named_parameters() if n not in placed]
    if unknown or missing:
        raise CheckpointError(f"checkpoint does not match preset {preset!r}: "
                              f"{len(unknown)} unknown key(s) {unknown[:3]}, {len(missing)} missing {missing[:3]}")
    if text_scale is not None:
        model.anchor.clip.logit_scale.data.copy_(text_scale)
    return model.eval()


def _config_with_scales(cfg, state: dict[str, torch.Tensor]):
    """The preset config with the checkpoint's own output scales (text's is learned)."""
    mods = []
    for m in cfg.modalities:
        log_scale = state.get(f"modality_postprocessors.{m.name}.1.log_logit_scale")
        if log_scale is not None:
            scale = float(log_scale.exp().clamp(max=100.0))
            head = dataclasses.replace(m.head, logit_scale=scale) if m.name in _SCALED else m.head
            m = dataclasses.replace(m, output_scale=scale, head=head)
        mods.append(m)
    return dataclasses.replace(cfg, modalities=tuple(mods))


def _assign(param: torch.Tensor, value: torch.Tensor, key: str, name: str, preset: str) -> None:
    """Copy one checkpoint tensor into its parameter: same shape, and finite (the causal mask,
    which holds -inf by design, is skipped before this)."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"checkpoint tensor {key} holds NaN or infinite values")
    if tuple(param.shape) != tuple(value.shape):
        raise CheckpointError(f"checkpoint does not match preset {preset!r}: {key} {tuple(value.shape)} "
                              f"cannot fill {name} {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value.to(param.dtype))


def convert_imagebind(checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                      preset: str = "imagebind-huge") -> Path:
    """Read an ImageBind checkpoint and save it as an anybind model folder (safetensors + config)."""
    model = convert_state_dict(read_state_dict(checkpoint), preset)
    return model.save(out_dir)
