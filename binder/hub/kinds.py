"""Kinds of released files and how each becomes an anybind model folder.

A catalog entry's ``kind`` picks the converter that turns its downloaded file into a folder of
``model.safetensors`` + ``config.json``. Converters import what they need when they run, so that
reading the catalog (``anybind models``) does not load torch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from binder.hub.catalog import ModelEntry


@dataclass(frozen=True)
class Kind:
    """A file format: whether it needs a preset, and ``convert(file, out_dir, entry)``."""

    name: str
    needs_preset: bool
    convert: Callable[[Path, Path, ModelEntry], None]
    summary: str


def _convert_imagebind(file: Path, out_dir: Path, entry: ModelEntry) -> None:
    """ImageBind's state dict (read with torch.load(weights_only=True)) → the entry's preset."""
    from binder.imagebind import convert_imagebind

    assert entry.preset is not None  # ModelEntry checks that an imagebind entry has one
    convert_imagebind(file, out_dir, entry.preset)


KINDS: dict[str, Kind] = {
    "imagebind": Kind("imagebind", True, _convert_imagebind,
                      "an ImageBind state dict (.pth or .safetensors), converted with a preset"),
}
