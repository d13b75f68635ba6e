"""Warm start: a modality's tokenizer and head begin from another trained binding's.

A recipe's ``[[modality]]`` may say ``init = { model = "PATH", modality = "video", stream = "rgb" }``:
the tokenizer and head that binding learned for ``modality`` are copied into this modality's (or,
for a multi-stream modality, into one of its streams), and the fusion gate starts with ``weight``
on that stream. Two-stream video starts its RGB stream from a video binding this way, so the
fused embedding starts where RGB alone already is and flow can only be added to it. ``lr_scale``
trains the copied parts at that fraction of the recipe's learning rate, so a fresh stream beside
them learns at a fresh binding's rate without scrambling what was copied; ``lr_scale = 0`` freezes
them, so the copied stream stays exactly the binding it came from and training (which then skips
its backward pass) can only change the other streams and the gate.

Both bindings must share the anchor: the embeddings live in its space. The anchor tensors in the
source folder are compared with the model's own, and any difference is a ConfigError, as is a
tokenizer or head whose shapes do not match (other options, another width).

A source binding that adapted the shared trunk (``[trunk] lora_rank`` or ``trainable_blocks``) saved
its trunk, and the copied tokenizer and head are only what they were through that trunk: the trunk
is copied too (and trained at ``lr_scale``, frozen at 0), and the model's trunk must be configured
as the source's was, else a ConfigError says so. A source with the frozen trunk copies none; a model
with LoRA of its own then starts from it unchanged (LoRA starts as the identity).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open

from binder.checkpoint import read_config
from binder.config import check_fields
from binder.errors import CheckpointError, ConfigError
from binder.heads import FusionHead

if TYPE_CHECKING:
    from binder.model import BindingModel

WEIGHTS = "model.safetensors"
TRUNK = "trunk."  # the shared trunk's tensors: saved only when a binding adapted it (LoRA, trainable blocks)


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """Where a modality's first weights come from: the binding folder ``model``, its modality
    ``modality`` (default: the same name), into ``stream`` (multi-stream modalities), with the
    fusion gate giving that stream ``weight``; the copied parts train at ``lr_scale`` times the
    recipe's learning rate (0: frozen)."""

    model: str
    modality: str = ""
    stream: str = ""
    weight: float = 0.8
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.weight < 1:
            raise ConfigError(f"init.weight must lie in (0, 1), got {self.weight}")
        if not 0 <= self.lr_scale <= 1:
            raise ConfigError(f"init.lr_scale must lie in [0, 1] (0 freezes the copy), got {self.lr_scale}")


def parse_warm_start(values: dict[str, Any], where: str) -> WarmStart:
    """A ``[[modality]]``'s ``init`` table as a ``WarmStart``; unknown keys name ``where``."""
    names = {f.name for f in dataclasses.fields(WarmStart)}
    unknown = sorted(set(values) - names)
    if unknown or "model" not in values:
        raise ConfigError(f"{where}: init needs 'model' and takes only {sorted(names)}; got {sorted(values)}")
    try:
        return WarmStart(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: init: {exc}") from None


def warm_start(model: BindingModel, name: str, init: WarmStart) -> dict[str, Any]:
    """Copy ``init``'s tokenizer and head into ``name``'s (or its ``init.stream``); what was copied:
    its source, the number of tensors, the parameter-name prefixes it filled (``parts``) and their
    ``lr_scale``."""
    source = init.modality or name
    tensors = _read(Path(init.model), source)
    _check_anchor(model, tensors, init.model)
    stream = init.stream
    head = model.heads[name] if name in model.heads else None
    if stream and not (isinstance(head, FusionHead) and stream in head.streams):
        raise ConfigError(f"init.stream {stream!r}: {name} has no such stream "
                          f"(streams: {', '.join(getattr(head, 'streams', ())) or 'none'})")
    into = {f"tokenizers.{source}.": f"tokenizers.{name}." + (f"streams.{stream}." if stream else ""),
            f"heads.{source}.": f"heads.{name}." + (f"heads.{stream}." if stream else "")}
    if _check_trunk(model, name, tensors, init.model, source):
        into[TRUNK] = TRUNK
    mapped = {dest + key[len(src):]: value for key, value in tensors.items()
              for src, dest in into.items() if key.startswith(src)}
    _check_shapes(model, mapped, into.values(), init.model, source)
    model.load_state_dict(mapped, strict=False)
    if init.lr_scale == 0:
        _freeze(model, tuple(into.values()))
    if stream and isinstance(head, FusionHead):
        head.set_weight(stream, init.weight)
        with torch.no_grad():
            head.log_logit_scale.copy_(mapped[f"heads.{name}.heads.{stream}.log_logit_scale"])
    return {"from": str(init.model), "modality": source, "stream": stream or None, "tensors": len(mapped),
            "parts": list(into.values()), "lr_scale": init.lr_scale}


def _freeze(model: BindingModel, prefixes: tuple[str, ...]) -> None:
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)


def _read(folder: Path, source: str) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS
    try:
        with safe_open(os.fspath(path), framework="pt") as fh:
            wanted = (f"tokenizers.{source}.", f"heads.{source}.", "anchor.", TRUNK, f"trunks.{source}.")
            keys = [k for k in fh.keys() if k.startswith(wanted)]
            tensors = {k: fh.get_tensor(k) for k in keys}
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"init.model {folder}: cannot read {WEIGHTS} ({exc})") from None
    if not any(k.startswith(f"tokenizers.{source}.") for k in tensors):
        raise ConfigError(f"init.model {folder}: holds no binding for modality {source!r}")
    return tensors


def _check_anchor(model: BindingModel, tensors: dict[str, torch.Tensor], folder: str) -> None:
    """The source's anchor tensors must equal the model's: a binding lives in its anchor's space."""
    own = model.state_dict()
    anchor = {k: v for k, v in tensors.items() if k.startswith("anchor.")}
    differ = [k for k, v in anchor.items() if k not in own or own[k].shape != v.shape or not torch.equal(own[k], v)]
    if not anchor or differ:
        raise ConfigError(f"init.model {folder}: was bound to another anchor ({len(differ)} of {len(anchor)} anchor "
                          f"tensors differ); warm starts need the same anchor")


def _check_trunk(model: BindingModel, name: str, tensors: dict[str, torch.Tensor], folder: str, source: str) -> bool:
    """Whether the source adapted the shared trunk (so it is copied with the stream); a ConfigError
    when the model's trunk is not built as the source's was, or the source ran its own encoder."""
    if any(k.startswith(f"trunks.{source}.") for k in tensors):
        raise ConfigError(f"init.model {folder}: its {source} binding has an encoder of its own ([[modality]] "
                          "trunk); a warm start copies from a binding on the shared trunk")
    if not any(k.startswith(TRUNK) for k in tensors):
        return False
    if model.trunk_for(name) is not model.trunk:
        raise ConfigError(f"init.model {folder}: {source} adapted the shared trunk, but {name} has a trunk of its own")
    try:
        bind = read_config(folder).get("bind")
    except CheckpointError as exc:
        raise ConfigError(f"init.model {folder}: {exc}") from None
    saved = bind.get("trunk") if isinstance(bind, dict) else None
    own = dataclasses.asdict(model.config.trunk)
    differ = {k: v for k, v in saved.items() if own.get(k) != v} if isinstance(saved, dict) else {}
    if differ or not isinstance(saved, dict):
        wanted = ", ".join(f"{k} = {v!r}" for k, v in sorted(differ.items())) or "as its config.json had it"
        raise ConfigError(f"init.model {folder}: {source} was trained through an adapted trunk (LoRA or trainable "
                          f"blocks), and the copy only means what it did through that trunk: set [trunk] {wanted}")
    return True


def _check_shapes(model: BindingModel, mapped: dict[str, torch.Tensor], prefixes: Any, folder: str,
                  source: str) -> None:
    own = model.state_dict()
    wanted = {k for k in own if k.startswith(tuple(prefixes))}
    bad = sorted(k for k, v in mapped.items() if k not in own or own[k].shape != v.shape)
    missing = sorted(wanted - set(mapped))
    if bad or missing:
        raise ConfigError(f"init.model {folder}: {source}'s tokenizer and head do not fit "
                          f"({len(bad)} tensors of another shape or unknown, e.g. {bad[:2]}; {len(missing)} missing, "
                          f"e.g. {missing[:2]}): the same options and trunk width are needed")
