"""Resumable training state without pickles: ``state_dict()`` trees split into safetensors + JSON.

Every stateful part of a run (optimizer, scheduler, losses with their queues) is saved through its
own public ``state_dict()`` and restored through ``load_state_dict()``. A state dict is a tree of
dicts, lists, tuples, numbers, strings and tensors; the tensors go to a safetensors file under
their path in the tree and the rest to JSON with the tensors' places marked, so the tree comes
back exactly (int keys stay ints, tuples stay tuples, floats round-trip bit for bit).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from binder.checkpoint import canonicalize_safetensors, check_safetensors
from binder.errors import CheckpointError
from binder.io import atomic_path, atomic_write_json

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
STATE_FORMAT = "anybind.train_state.v2"


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


def split_state(tree: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """``tree`` as JSON-able data; each tensor is moved into ``tensors`` under its dotted path."""
    if isinstance(tree, torch.Tensor):
        tensors[path] = tree.detach().cpu().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(tree, dict):
        return {"__dict__": [[k, split_state(v, tensors, f"{path}.{k}")] for k, v in tree.items()]}
    if isinstance(tree, tuple):
        return {"__tuple__": [split_state(v, tensors, f"{path}.{i}") for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [split_state(v, tensors, f"{path}.{i}") for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot save {type(tree).__name__} at {path or 'the root'} of a training state")


def join_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``split_state``."""
    if isinstance(data, dict):
        if "__tensor__" in data:
            return tensors[data["__tensor__"]]
        if "__tuple__" in data:
            return tuple(join_state(v, tensors) for v in data["__tuple__"])
        return {k: join_state(v, tensors) for k, v in data["__dict__"]}
    if isinstance(data, list):
        return [join_state(v, tensors) for v in data]
    return data


def save_train_state(folder: str | os.PathLike, parts: dict[str, Stateful], info: dict[str, Any]) -> None:
    """Each part's ``state_dict()`` plus JSON ``info``, each file through a temp file and a rename."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    tree = {name: split_state(part.state_dict(), tensors, name) for name, part in parts.items()}
    with atomic_path(folder / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp))
        canonicalize_safetensors(tmp)  # same state, same bytes
    atomic_write_json(folder / STATE_JSON, {"format": STATE_FORMAT, "parts": tree, "info": info})


def load_train_state(folder: str | os.PathLike, parts: dict[str, Stateful]) -> dict[str, Any]:
    """Restore every part through ``load_state_dict``; return the JSON ``info``."""
    folder = Path(folder)
    check_safetensors(folder / STATE_TENSORS)
    if not (folder / STATE_JSON).is_file():
        raise CheckpointError(f"{folder}: no {STATE_JSON}; not a resumable checkpoint")
    try:
        payload = json.loads((folder / STATE_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / STATE_JSON}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{folder}: training state is not {STATE_FORMAT} (written by another anybind version?)")
    tensors = load_file(str(folder / STATE_TENSORS))
    saved = payload["parts"]
    missing = sorted(set(parts) - set(saved))
    if missing:
        raise CheckpointError(f"{folder}: training state has no {', '.join(missing)}; it does not fit this recipe")
    for name, part in parts.items():
        try:
            part.load_state_dict(join_state(saved[name], tensors))
        except (ValueError, KeyError, RuntimeError, TypeError, CheckpointError) as exc:
            raise CheckpointError(f"{folder}: {name} state does not fit this recipe ({exc})") from None
    return payload["info"]
