"""Loading only the parts of a model folder that a job needs.

A converted ImageBind-Huge folder holds six towers (1.2 B parameters); embedding one audio file
needs the audio tokenizer, trunk and head and nothing else. ``load_parts`` builds the model's
structure on the ``meta`` device (no memory, no random init), then reads from the safetensors
file only the tensors under the wanted modules, tensor by tensor, and assigns them in place.
Everything else stays on ``meta`` and is never touched: a modality that was not asked for is not
in the partial model at all, and the anchor's image or text tower is only materialized when the
``image`` or ``text`` modality (or a trunk shared with the image tower) is asked for.

The checks of a full load hold for the parts: every wanted tensor must be in the file with the
model's shape, nothing unexpected may sit under a wanted module, and every value must be finite.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from binder.checkpoint import WEIGHTS, check_safetensors, misfit
from binder.errors import CheckpointError

if TYPE_CHECKING:
    from binder.model import BindingModel

ANCHOR = "anchor.clip."
IMAGE_TOWER = "anchor.clip.visual."
ALWAYS = ("anchor.clip.logit_scale",)  # the anchor's temperature: one number, used by classify


class UnfilledPartError(CheckpointError):
    """A wanted tensor that the weights file does not hold and this loader cannot recompute
    (a non-persistent buffer of an architecture it does not know)."""


def part_prefixes(model: BindingModel, names: Iterable[str]) -> list[str]:
    """State-dict prefixes of the modules that encoding ``names`` runs through.

    The text tower is every anchor tensor outside the image tower, so it is named by exclusion
    (``"anchor.clip.~visual"``), which ``wanted`` understands.
    """
    prefixes = list(ALWAYS)
    for name in names:
        tower = model.modality(name).tower
        if tower == "image":
            prefixes.append(IMAGE_TOWER)
        elif tower == "text":
            prefixes.append(ANCHOR + "~visual")
        else:
            trunk = f"trunks.{name}." if name in model.trunks else "trunk."
            prefixes += [f"tokenizers.{name}.", f"heads.{name}.", trunk]
    return prefixes


def wanted(key: str, prefixes: Sequence[str]) -> bool:
    """Whether state-dict ``key`` lies under one of ``prefixes`` (see ``part_prefixes``)."""
    for prefix in prefixes:
        if prefix.endswith("~visual"):
            if key.startswith(ANCHOR) and not key.startswith(IMAGE_TOWER):
                return True
        elif key.startswith(prefix) or key == prefix:
            return True
    return False


def load_parts(model: BindingModel, folder: str | os.PathLike, names: Sequence[str] | None) -> BindingModel:
    """Fill the parts of a meta-built ``model`` that encoding ``names`` needs from ``folder``'s weights;
    ``names=None`` fills all of it (a whole load without building random weights first)."""
    path = Path(folder) / WEIGHTS
    check_safetensors(path)
    prefixes = [""] if names is None else part_prefixes(model, names)
    reference = model.state_dict(keep_vars=True)
    try:
        with safe_open(str(path), framework="pt") as fh:
            stored = set(fh.keys())
            state = _read_groups(fh, stored, reference, prefixes, path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from None
    unexpected = sorted(k for k in stored if wanted(k, prefixes) and k not in reference)
    if unexpected:
        raise misfit(path, f"unexpected tensors {unexpected[:5]}")
    model.load_state_dict(state, strict=False, assign=True)
    _rebuild_buffers(model, prefixes, path)
    return model


def _read_groups(fh, stored: set[str], reference: dict[str, torch.Tensor], prefixes: Sequence[str],
                 path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for group in alias_groups(reference):
        if not any(wanted(k, prefixes) for k in group):
            continue
        key = next((k for k in group if k in stored), None)
        if key is None:
            raise misfit(path, f"missing tensor {group[0]}")
        tensor = fh.get_tensor(key)
        expected = reference[key]
        if tuple(tensor.shape) != tuple(expected.shape):
            raise misfit(path, f"tensor {key} has shape {tuple(tensor.shape)}, the model expects "
                               f"{tuple(expected.shape)}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
        tensor = tensor.to(expected.dtype)
        if isinstance(expected, nn.Parameter):
            tensor = nn.Parameter(tensor, requires_grad=expected.requires_grad)
        for alias in group:
            state[alias] = tensor
    return state


def alias_groups(reference: dict[str, torch.Tensor]) -> list[list[str]]:
    """State-dict names grouped by the tensor they hold: a module shared under two names (the
    anchor's image blocks reused as the trunk) appears once in a file but twice in the model."""
    groups: dict[int, list[str]] = {}
    for key, tensor in reference.items():
        groups.setdefault(id(tensor), []).append(key)
    return list(groups.values())


def _rebuild_buffers(model: nn.Module, prefixes: Sequence[str], path: Path) -> None:
    """Recompute the non-persistent buffers of the loaded parts; any other one left on ``meta``
    is a part this loader cannot fill. The only such buffer in open_clip's towers is the text
    tower's ``attn_mask``, which is always the causal mask of its context length (or None)."""
    for name, module in model.named_modules():
        mask = getattr(module, "attn_mask", None)
        key = f"{name}.attn_mask" if name else "attn_mask"
        if isinstance(mask, torch.Tensor) and mask.is_meta and mask.dim() == 2 and wanted(key, prefixes):
            module.attn_mask = causal_mask(mask.shape[0])
    left = [n for n, b in model.named_buffers() if b.is_meta and wanted(n, prefixes)]
    left += [n for n, p in model.named_parameters() if p.is_meta and wanted(n, prefixes)]
    if left:
        raise UnfilledPartError(f"{path}: {left[0]} is not stored in the weights file and cannot be rebuilt "
                                f"without building the whole model")


def causal_mask(length: int) -> torch.Tensor:
    """Additive causal attention mask: 0 on and below the diagonal, -inf above (as open_clip builds it)."""
    return torch.full((length, length), float("-inf"), device="cpu").triu_(1)
