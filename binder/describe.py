"""Human-readable description of the modalities a model holds (the ``anybind modalities`` table)."""
from __future__ import annotations

from typing import cast

import torch

from binder.model import BindingModel


def token_shape(model: BindingModel, name: str) -> tuple[int, int]:
    """(tokens, width) one item of ``name`` becomes, measured by running its tokenizer on zeros."""
    modality = model.modality(name)
    if modality.tower == "image":
        visual = model.anchor.visual
        grid = cast("tuple[int, int]", visual.grid_size) if hasattr(visual, "grid_size") else (0, 0)
        return grid[0] * grid[1] + 1, model.anchor.width
    if modality.tower == "text":
        return modality.input_shape()[0], int(model.anchor.clip.transformer.width)
    shape = modality.input_shape()[1:] if modality.has_clips else modality.input_shape()
    with torch.inference_mode():
        out = model.tokenizers[name](torch.zeros(1, *shape))
    tokens = out[0] if isinstance(out, tuple) else out
    return int(tokens.shape[1]), int(tokens.shape[2])


def modality_table(model: BindingModel) -> list[str]:
    """Rows: name, extensions, input tensor, tokens × width, encoder, length policy."""
    rows = [("modality", "extensions", "input", "tokens", "encoder", "length policy")]
    for name, modality in model.modalities.items():
        n, w = token_shape(model, name)
        encoder = f"anchor {modality.tower} tower" if modality.tower else "shared trunk"
        exts = " ".join(modality.extensions) or "(use --modality)"
        rows.append((name, exts, "x".join(map(str, modality.input_shape())), f"{n}x{w}", encoder,
                     modality.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
