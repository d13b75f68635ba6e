"""Model folders: ``model.safetensors`` (weights) + ``config.json`` (how to rebuild). No pickles, ever."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from binder.errors import CheckpointError
from binder.io import atomic_path, atomic_write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def save_checkpoint(folder: str | os.PathLike, module: nn.Module, config: dict[str, Any]) -> Path:
    """Write weights then config, each through a temp file, so a folder with config.json is complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_model(module, str(tmp), metadata={"format": "pt", "library": "anybind"})
    atomic_write_json(folder / CONFIG, config, sort_keys=True)
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a model folder."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder}: not an anybind model folder (no {CONFIG})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: config is not valid JSON ({exc})") from None


def check_safetensors(path: str | os.PathLike) -> None:
    """Refuse anything that is not a well-formed safetensors file, pickles first of all."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file is missing")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(PICKLE_MAGICS):
        raise CheckpointError(f"{path}: is a pickle / torch.save file, not safetensors; anybind refuses to unpickle "
                              "weights (convert them with safetensors.torch.save_file first)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None


def load_weights(folder: str | os.PathLike, module: nn.Module) -> None:
    """Load a folder's weights into ``module``; every tensor must match by name and shape."""
    path = Path(folder) / WEIGHTS
    check_safetensors(path)
    try:
        load_model(module, str(path), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({exc})") from None
