"""Human-readable description of the modalities a model holds (the ``anybind modalities`` table)."""
from __future__ import annotations

from typing import cast

import torch

from binder.model import BindingModel
from binder.tokenizers import StreamTokens


def token_shape(model: BindingModel, name: str) -> tuple[int, int]:
    """(tokens, width) one item of ``name`` becomes, measured by running its tokenizer on zeros (per
    stream, for a modality of several: each stream is a sequence of that length)."""
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
    if isinstance(out, StreamTokens):  # several streams, each its own sequence: one stream's length
        out = out.streams[0]
    tokens = out[0] if isinstance(out, tuple) else out
    return int(tokens.shape[1]), int(tokens.shape[2])


def modality_table(model: BindingModel) -> list[str]:
    """Rows: name, extensions, input tensor, tokens × width, encoder, length policy."""
    rows = [("modality", "extensions", "input", "tokens", "encoder", "length policy")]
    for name, modality in model.modalities.items():
        n, w = token_shape(model, name)
        streams = modality.streams()
        encoder = f"anchor {modality.tower} tower" if modality.tower else "shared trunk"
        if streams:
            n_text, encoder = f"{len(streams)}x{n}x{w}", f"shared trunk per stream ({', '.join(streams)}), fused late"
        else:
            n_text = f"{n}x{w}"
        exts = " ".join(modality.extensions) or "(use --modality)"
        rows.append((name, exts, "x".join(map(str, modality.input_shape())), n_text, encoder,
                     modality.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
