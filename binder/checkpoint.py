"""Model folders: ``model.safetensors`` (weights) + ``config.json`` (how to rebuild). No pickles, ever.

Reading a folder is bounded before anything is built: ``config.json`` is size-capped and must be
a JSON object, every size it declares (widths, layers, heads, patch and token counts) is checked
against ``CONFIG_BOUNDS``, and the transformer parameters it implies must fit in what the weights
file holds, so an absurd config fails with a CheckpointError instead of a multi-GB allocation.
Loaded weights must be finite. Writing is byte-reproducible: ``canonicalize_safetensors`` sorts the
header metadata, which safetensors writes in a per-process hash order.

A folder is self-contained: a file a modality option names (``binder.config.file_option``: the
speech-units codebook) is copied in as ``MODALITY.OPTION.EXT`` when a model is saved and named
relative to the folder (``bundle_option_files``). Loading (``resolve_option_files``) opens only
files inside the folder; a path that leaves it is a CheckpointError naming the key. Folders of
format 1 (written before this rule) named such files as given to the trainer, relative to its
working directory or absolute: their paths are never opened unless they lie inside the folder,
and the model is rebuilt from its weights alone, which hold the codebook (see ``LegacyOption``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from binder.config import BindConfig, file_options
from binder.errors import CheckpointError, RegistryError
from binder.io import atomic_path, atomic_write_json
from binder.registry import get_modality

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few kB; anything near this is not one
MAX_PARAMS = 8_000_000_000  # elements in one weights file (ImageBind-Huge holds 1.2 B)
# Largest value a config may give each size key (anywhere in config.json); lists are checked element-wise.
CONFIG_BOUNDS: dict[str, float] = {
    "width": 16384, "embed_dim": 16384, "head_width": 4096, "layers": 256, "heads": 256, "mlp_ratio": 64,
    "image_size": 8192, "patch_size": 1024, "patch": 4096, "context_length": 16384, "vocab_size": 1_000_000,
    "length": 1_000_000, "num_frames": 1024, "clips": 256, "num_mel_bins": 4096, "target_length": 100_000,
    "max_frames": 1_000_000, "num_units": 1_000_000, "max_units": 100_000, "max_channels": 4096,
    "channels": 4096, "kernel": 100_000, "stride": 4096, "tubelet": 4096, "n_mfcc": 1024, "n_mels": 4096,
    "lora_rank": 4096, "trainable_blocks": 256,
}


def save_checkpoint(folder: str | os.PathLike, module: nn.Module, config: dict[str, Any]) -> Path:
    """Write weights then config, each through a temp file, so a folder with config.json is complete.

    The same weights and config always give the same bytes (``canonicalize_safetensors``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_model(module, str(tmp), metadata={"format": "pt", "library": "anybind"})
        canonicalize_safetensors(tmp)
    atomic_write_json(folder / CONFIG, config, sort_keys=True)
    return folder


class LegacyOption(NamedTuple):
    """A file option of a format-1 folder that names a path outside the folder: never opened, and
    cleared (None) in the loaded config so the model is rebuilt from its weights alone."""

    modality: str
    key: str
    value: str

    def explain(self, folder: str | os.PathLike) -> str:
        return (f"{folder}: {CONFIG} names {self.modality} option {self.key} = {self.value!r}, a path outside the "
                f"model folder (written by an older anybind); such paths are never opened, and this model cannot "
                f"be rebuilt from its weights without that file: copy it into {folder} and set the option to its "
                f"file name in {CONFIG}")


def option_files(config: BindConfig) -> Iterator[tuple[int, str, str, Any]]:
    """(modality index, modality name, option key, value) of every file option of ``config``'s modalities
    (a modality not registered has none here; building it fails later with its own error)."""
    for i, m in enumerate(config.modalities):
        try:
            keys = file_options(get_modality(m.name).Options)
        except RegistryError:
            continue
        for key in keys:
            yield i, m.name, key, m.options.get(key)


def with_former_defaults(config: BindConfig, version: int) -> BindConfig:
    """``config`` as read from a folder of format ``version``: each option whose default a modality
    changed in a later format (``Modality.former_defaults``), and that the folder does not name,
    takes the default the folder was saved under, so an older model reads its inputs as it was
    trained. A modality not registered is left as it is (building it fails later, with its own error)."""
    changes: dict[int, dict[str, Any]] = {}
    for i, m in enumerate(config.modalities):
        try:
            former = get_modality(m.name).former_defaults
        except RegistryError:
            continue
        for since in sorted(v for v in former if v > version):  # the earliest change holds what it replaced
            for key, value in former[since].items():
                if key not in m.options:
                    changes.setdefault(i, {}).setdefault(key, value)
    return _with_options(config, changes)


def _with_options(config: BindConfig, changes: dict[int, dict[str, Any]]) -> BindConfig:
    if not changes:
        return config
    mods = tuple(dataclasses.replace(m, options={**m.options, **changes[i]}) if i in changes else m
                 for i, m in enumerate(config.modalities))
    return dataclasses.replace(config, modalities=mods)


def bundle_option_files(folder: str | os.PathLike, config: BindConfig) -> BindConfig:
    """Copy every file a modality option of ``config`` names into ``folder`` (as ``MODALITY.OPTION.EXT``);
    the config to write, which names each copy relative to ``folder``."""
    folder = Path(folder)
    changes: dict[int, dict[str, Any]] = {}
    for i, name, key, value in option_files(config):
        if value is None:
            continue
        source = Path(value)
        if not source.is_file():
            raise CheckpointError(f"cannot save a self-contained model: {name} option {key} names {value!r}, "
                                  f"which is not a file")
        target = folder / f"{name}.{key}{''.join(source.suffixes[-1:])}"
        if not (target.is_file() and os.path.samefile(source, target)):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        changes.setdefault(i, {})[key] = target.name
    return _with_options(config, changes)


def resolve_option_files(folder: str | os.PathLike, config: BindConfig,
                         legacy: bool = False) -> tuple[BindConfig, list[LegacyOption]]:
    """``config`` with each file option a path inside ``folder`` (absolute), the files checked.

    A value that is absolute, climbs out with ``..`` or leads out through a link is a CheckpointError
    naming the key, and so is a file that is not there. With ``legacy`` (a format-1 folder, whose
    paths were written as the trainer was given them) such a value is instead never opened: the
    option is cleared and returned as a ``LegacyOption``, the model being rebuilt from its weights.
    """
    folder = Path(folder)
    root = folder.resolve()
    changes: dict[int, dict[str, Any]] = {}
    cleared: list[LegacyOption] = []
    for i, name, key, value in option_files(config):
        if value is None:
            continue
        where = f"{folder / CONFIG}: {name} option {key} = {value!r}"
        problem = _outside(root, value)
        if problem is None:
            changes.setdefault(i, {})[key] = str((root / PurePosixPath(value)).resolve())
        elif legacy:
            changes.setdefault(i, {})[key] = None
            cleared.append(LegacyOption(name, key, str(value)))
        else:
            raise CheckpointError(f"{where} {problem}; a model folder names its files relative to itself")
    return _with_options(config, changes), cleared


def _outside(root: Path, value: Any) -> str | None:
    """Why ``value`` does not name a file inside the folder ``root`` (None when it does)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return "is not a file name"
    rel = PurePosixPath(value)
    if rel.is_absolute() or PureWindowsPath(value).is_absolute():
        return "is an absolute path, outside the model folder"
    if "\\" in value:
        return "is not a relative path with '/' separators"
    if ".." in rel.parts:
        return "leaves the model folder"
    try:
        real = (root / rel).resolve()
        if not real.is_relative_to(root):
            return "leads out of the model folder through a link"
        if not real.is_file():
            return "is not a file in the model folder"
    except (OSError, RuntimeError):  # a name too long, a loop of links
        return "is not a file in the model folder"
    return None


def canonicalize_safetensors(path: str | os.PathLike) -> None:
    """Rewrite a safetensors header with its ``__metadata__`` keys sorted, in place.

    safetensors keeps metadata in a Rust HashMap, written in an order that changes from process to
    process, so two saves of the same weights differed in bytes. Sorting keys leaves the JSON the
    same length (same entries, same separators), so only the header bytes are rewritten.
    """
    with open(path, "r+b") as fh:
        length = struct.unpack("<Q", fh.read(8))[0]
        raw = fh.read(length)
        header = json.loads(raw)
        meta = header.get("__metadata__")
        if not isinstance(meta, dict):
            return
        rest = {k: v for k, v in header.items() if k != "__metadata__"}
        ordered = {"__metadata__": dict(sorted(meta.items())), **rest}
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > length or json.loads(text) != header:
            return  # formatting differs from the writer's: leave the file as written rather than risk it
        fh.seek(8)
        fh.write(text + b" " * (length - len(text)))


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a model folder: size-capped, a JSON object, its declared sizes bounded."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder}: not an anybind model folder (no {CONFIG})")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: config is {size:,} bytes, more than {MAX_CONFIG_BYTES:,}; not a model config")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: config is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: config must be a JSON object, got a {type(payload).__name__}")
    check_config_sizes(payload, str(path))
    return payload


def check_config_sizes(config: Any, where: str) -> None:
    """Every size key of ``CONFIG_BOUNDS`` anywhere in ``config`` is a finite number in [0, bound]."""
    for key, value in _walk_items(config):
        bound = CONFIG_BOUNDS.get(key)
        if bound is None or value is None:
            continue
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckpointError(f"{where}: {key!r} must be a number, got {v!r}")
            if not 0 <= v <= bound:
                raise CheckpointError(f"{where}: {key!r} = {v} is out of range (0..{bound:g}); "
                                      f"refusing to build such a model")


def _walk_items(node: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if depth > 32:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _walk_items(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_items(value, depth + 1)


def transformer_params(config: Any) -> int:
    """A lower bound on the parameters a config's transformer stacks allocate.

    Every object with a numeric ``width`` and ``layers`` (the anchor's vision and text towers, a
    standalone trunk, a modality's own trunk) holds at least (4 + 2 · mlp_ratio) · width² per block.
    A trunk of ``kind = "anchor"`` reuses the anchor's blocks and counts nothing.
    """
    total = 0
    for node in _walk_dicts(config):
        width, layers = node.get("width"), node.get("layers")
        if node.get("kind") == "anchor" or not isinstance(width, (int, float)) or not isinstance(layers, (int, float)):
            continue
        ratio = node.get("mlp_ratio", 4.0)
        ratio = ratio if isinstance(ratio, (int, float)) else 4.0
        total += int((4 + 2 * ratio) * width * width * layers)
    return total


def _walk_dicts(node: Any, depth: int = 0) -> Iterator[dict]:
    if depth > 32:
        return
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk_dicts(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_dicts(value, depth + 1)


def weights_elements(folder: str | os.PathLike) -> int:
    """Elements the weights file of a folder holds, from its header (nothing is loaded)."""
    path = Path(folder) / WEIGHTS
    check_safetensors(path)
    with safe_open(str(path), framework="pt") as fh:
        return sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())


def check_buildable(folder: str | os.PathLike, config: dict[str, Any]) -> None:
    """Refuse, before building, a config whose transformers need more weights than the file holds."""
    held = weights_elements(folder)
    if held > MAX_PARAMS:
        raise CheckpointError(f"{folder}: weights hold {held:,} elements, more than the limit of {MAX_PARAMS:,}")
    need = transformer_params(config)
    if need > max(held, 1) * 1.01:
        raise CheckpointError(f"{folder}: config describes transformers of at least {need:,} parameters but "
                              f"{WEIGHTS} holds {held:,}; config and weights do not belong together")


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


def misfit(path: str | os.PathLike, detail: str) -> CheckpointError:
    """The error for weights that do not fit the model a folder's config describes. Folders saved
    before models wrote out every option may predate a changed default, so it says what to try."""
    return CheckpointError(f"{path}: weights do not fit the model its config describes ({detail}); a folder "
                           f"saved by an older anybind may need the old value of an option whose default "
                           f"changed written into config.json (docs/guides/training.md, \"Folders saved by "
                           f"older releases\")")


def load_weights(folder: str | os.PathLike, module: nn.Module) -> None:
    """Load a folder's weights into ``module``; every tensor must match by name and shape, and be finite."""
    path = Path(folder) / WEIGHTS
    check_safetensors(path)
    try:
        load_model(module, str(path), strict=True)
    except (RuntimeError, SafetensorError, OSError, ValueError) as exc:
        raise misfit(path, str(exc)) from None
    check_finite_weights(module, path)


def check_finite_weights(module: nn.Module, where: str | os.PathLike) -> None:
    """Refuse NaN/Inf in any floating-point tensor: every embedding would silently be NaN."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{where}: tensor {name} holds {bad} NaN or infinite value(s)")
