"""The next iteration of speech units (HuBERT's second): a codebook of a trained binding's hidden features.

HuBERT's units improve when the k-means of a second iteration clusters the hidden features of
the first model instead of MFCC frames. Here the first model is a trained ``speech_units``
binding: its tokenizer turns MFCC frames into units and tokens, and the first ``layer`` blocks
of its trunk give each unit token a contextual feature. ``fit_next_codebook`` clusters those
features; the codebook it returns carries that extractor (frozen weights and a description),
so a binding trained on the new units needs only the codebook file (``modalities.speech_codebook``).
``fit_first_codebook`` fits the first iteration on MFCC frames. The result is a pure function of
(model, files, layer, k, seed). The hidden features may be computed on a GPU (``device``; the
extractor is built and checked on the CPU, k-means runs there too, in sklearn). When no file can be
read the error names the first few and why.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from binder.errors import AnybindError, ModalityError
from binder.model import BindingModel
from binder.trunk import Trunk
from modalities.speech_codebook import Codebook
from modalities.speech_units import FEATURE_OPTIONS, HiddenUnits, SpeechUnits, SpeechUnitTokenizer

MODALITY = "speech_units"
SHOWN_FAILURES = 3  # files named, with their reasons, when none could be read


def describe_trunk(trunk: Trunk, layer: int) -> dict[str, Any]:
    """What ``trunk_layers`` needs to rebuild the first ``layer`` blocks of ``trunk``."""
    blocks = list(trunk.blocks)
    if not 1 <= layer <= len(blocks):
        raise AnybindError(f"layer must be 1..{len(blocks)} (the trunk's blocks), got {layer}")
    first = blocks[0]
    attn = cast(nn.MultiheadAttention, first.attn)
    if any(hasattr(m, "parametrizations") for m in trunk.modules()) or getattr(attn, "bias_k", None) is not None:
        raise AnybindError("the binding's trunk has LoRA or extra key/value biases: its hidden features cannot be "
                           "taken into a codebook; train the first iteration on a plain trunk")
    mlp = cast(nn.Module, first.mlp)
    fc = cast(nn.Linear, mlp.c_fc)
    act = "quick_gelu" if type(mlp.gelu).__name__ == "QuickGELU" else "gelu"
    return {"width": trunk.width, "layers": layer, "heads": attn.num_heads, "mlp_ratio": fc.out_features / trunk.width,
            "norm_eps": float(cast(nn.LayerNorm, first.ln_1).eps), "act": act,
            "pre_norm": not isinstance(trunk.ln_pre, nn.Identity)}


def speech_tokenizer(model: BindingModel) -> SpeechUnitTokenizer:
    """The binding's speech-units tokenizer; a clear error for a model that holds no such binding."""
    tokenizer = model.tokenizers[MODALITY] if MODALITY in model.tokenizers else None
    if not isinstance(tokenizer, SpeechUnitTokenizer):
        held = ", ".join(model.stored) or "no modality"
        raise AnybindError(f"the model holds no {MODALITY} binding (it holds: {held}); the next iteration's "
                           f"codebook needs a trained {MODALITY} binding")
    return tokenizer


def nothing_read(failed: Sequence[tuple[str, str]]) -> AnybindError:
    """The error when no speech file could be read: the first few files and their reasons."""
    if not failed:
        return AnybindError("no speech files given: nothing to fit a codebook on")
    shown = "; ".join(f"{path}: {reason}" for path, reason in failed[:SHOWN_FAILURES])
    more = f"; and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else ""
    return AnybindError(f"no speech file could be read ({len(failed)} tried: {shown}{more}): "
                        f"nothing to fit a codebook on")


def hidden_extractor(model: BindingModel, layer: int | None = None) -> HiddenUnits:
    """A frozen copy of the binding's speech-units tokenizer and first ``layer`` trunk blocks
    (default: half the trunk, as HuBERT's second iteration took layer 6 of 12)."""
    tokenizer = speech_tokenizer(model)
    trunk = model.trunk_for(MODALITY)
    layer = layer if layer is not None else max(1, len(trunk.blocks) // 2)
    opts = model.modality(MODALITY).options
    info = {"iteration": tokenizer.iteration + 1, "layer": layer, "trunk": describe_trunk(trunk, layer),
            "tokenizer": {"num_units": tokenizer.pad_id, "max_units": tokenizer.max_units,
                          "features": {k: getattr(opts, k) for k in FEATURE_OPTIONS}, "source": tokenizer.source_info}}
    extractor = HiddenUnits(info, dataclasses.replace(opts, codebook=None))
    state = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}
    state.update({f"trunk.{k}": v for k, v in trunk.state_dict().items()
                  if not k.startswith("blocks.") or int(k.split(".")[1]) < layer})
    extractor.load_state_dict(state)
    _check_same_features(extractor, tokenizer, trunk, layer, opts.max_frames, opts.feature_dim)
    return extractor


@torch.no_grad()
def _check_same_features(extractor: HiddenUnits, tokenizer: nn.Module, trunk: Trunk, layer: int,
                         frames: int, dim: int) -> None:
    """The rebuilt extractor must compute what the binding computes (catches a trunk it cannot describe)."""
    x = torch.randn(2, frames, dim, generator=torch.Generator().manual_seed(0))
    x[1, frames // 2:] = float("nan")
    tokens, pad = tokenizer(x)
    h = trunk(tokens, pad, layers=layer)
    ours, valid = extractor(x)
    if not torch.allclose(ours[valid], h[:, 1:][valid], atol=1e-4):
        raise AnybindError("the binding's trunk blocks could not be rebuilt exactly; its hidden features "
                           "cannot be taken into a codebook")


def hidden_rows(extractor: HiddenUnits, model: BindingModel, paths: Sequence[str | os.PathLike],
                batch_size: int = 32, progress: bool = True,
                device: torch.device | str | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The hidden feature of every unit token of every file (float32 rows, on the CPU), and the files
    that failed. ``device`` (None: where the extractor is) computes them there: the extractor moves
    there and so does each batch."""
    modality = model.modality(MODALITY)
    if device is not None:
        extractor = extractor.to(device)
    where = next(extractor.parameters()).device
    rows: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="hidden features", unit="batch", disable=not progress):
        items = []
        for path in paths[start:start + batch_size]:
            try:
                items.append(modality.prepare(path))
            except ModalityError as exc:
                failed.append((os.fspath(path), exc.reason))
        if items:
            hidden, valid = extractor(modality.collate(items).to(where))
            rows.append(hidden[valid].float().cpu().numpy())
    if not rows:
        raise nothing_read(failed)
    return np.concatenate(rows), failed


def fit_next_codebook(model: BindingModel, paths: Sequence[str | os.PathLike], layer: int | None = None,
                      k: int = 100, seed: int = 0, max_rows: int = 200_000, progress: bool = True,
                      device: torch.device | str = "cpu") -> tuple[Codebook, list[tuple[str, str]]]:
    """The next iteration's codebook from ``model``'s hidden features on ``paths`` (train speech only).

    ``model`` is read on the CPU (its weights are copied into the extractor); the features are
    computed on ``device`` and clustered on the CPU."""
    extractor = hidden_extractor(model, layer)
    rows, failed = hidden_rows(extractor, model, paths, progress=progress, device=device)
    if len(rows) > max_rows:  # a seeded sample keeps k-means affordable
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))]
    try:
        book = Codebook.fit(rows, k, seed)
    except ValueError as exc:
        raise AnybindError(str(exc)) from None
    book.info = extractor.info
    book.extras = {name: t.detach().cpu().numpy() for name, t in extractor.state_dict().items()}
    return book, failed


def fit_first_codebook(paths: Sequence[str | os.PathLike], k: int = 100, seed: int = 0,
                       options: dict[str, Any] | None = None, progress: bool = True,
                       skip_bad: bool = True) -> tuple[Codebook, list[tuple[str, str]]]:
    """The first iteration's codebook: k-means over the MFCC+Δ+ΔΔ frames of ``paths``, and the files
    that could not be read (``skip_bad=False``: the first of them raises its ModalityError)."""
    modality = SpeechUnits(**(options or {}))
    frames: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    for path in tqdm(paths, desc="MFCC features", unit="file", disable=not progress):
        try:
            frames.append(modality.prepare(path).numpy())
        except ModalityError as exc:
            if not skip_bad:
                raise
            failed.append((os.fspath(path), exc.reason))
    if not frames:
        raise nothing_read(failed)
    try:
        return Codebook.fit(frames, k, seed), failed
    except ValueError as exc:
        raise AnybindError(str(exc)) from None
