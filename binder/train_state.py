"""Resumable training state without pickles: tensors in safetensors, the rest in JSON."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from binder.checkpoint import check_safetensors
from binder.errors import CheckpointError

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


def save_train_state(folder: str | os.PathLike, optimizer: torch.optim.Optimizer, extra_tensors: dict[str, torch.Tensor],
                     info: dict[str, Any]) -> None:
    """Optimizer moments + any extra tensors (queues) + JSON info, each via temp file and rename."""
    folder = Path(folder)
    state = optimizer.state_dict()
    tensors = {f"opt.{pid}.{k}": v.detach().clone().contiguous()
               for pid, st in state["state"].items() for k, v in st.items()}
    tensors.update({k: v.detach().clone().contiguous() for k, v in extra_tensors.items()})
    payload = {"param_groups": state["param_groups"], **info}
    tmp_t, tmp_j = folder / f".{STATE_TENSORS}.tmp", folder / f".{STATE_JSON}.tmp"
    save_file(tensors, str(tmp_t))
    tmp_j.write_text(json.dumps(payload, indent=2))
    os.replace(tmp_t, folder / STATE_TENSORS)
    os.replace(tmp_j, folder / STATE_JSON)


def load_train_state(folder: str | os.PathLike, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore the optimizer; return (extra tensors, JSON info)."""
    folder = Path(folder)
    check_safetensors(folder / STATE_TENSORS)
    if not (folder / STATE_JSON).is_file():
        raise CheckpointError(f"{folder}: no {STATE_JSON}; not a resumable checkpoint")
    tensors = load_file(str(folder / STATE_TENSORS))
    info = json.loads((folder / STATE_JSON).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    extra = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
        else:
            extra[key] = value
    groups = info.pop("param_groups")
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder}: optimizer state does not fit this recipe ({exc})") from None
    return extra, info
