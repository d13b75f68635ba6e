"""A multi-stream modality's fusion gate, set on its held-out val pairs after training.

The gate learned during training follows the training loss, and a weak stream can hold a share
that costs the fused vector on new data. Scoring a grid of gate weights (the learned one among
them) by the binding's own objective on the val pairs, and keeping the best, gives a fused vector
that is at least as good as any single stream there: a stream that carries nothing ends with no
weight. The score uses only the (modality, target) pairs the binding is trained on (never class
labels), so an image-bound binding stays bound by image pairs alone.
"""
from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

from binder.heads import FusionHead
from binder.heads import fuse as fuse_streams
from binder.model import BindingModel
from binder.train.evaluate import embed_tensor

GRID_STEPS = 20  # the gate weights tried: multiples of 1/20 on the simplex (21 mixes for two streams)


def simplex_grid(streams: int, steps: int = GRID_STEPS) -> list[tuple[float, ...]]:
    """Every weight vector of ``streams`` non-negative multiples of 1/``steps`` summing to 1."""
    return [tuple(c / steps for c in combo) + ((steps - sum(combo)) / steps,)
            for combo in itertools.product(range(steps + 1), repeat=streams - 1) if sum(combo) <= steps]


def pair_loss(z: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, scale: float) -> float:
    """Cross-entropy of each row finding its own target among the distinct targets (the binding's
    modality → target InfoNCE direction on held-out pairs)."""
    logits = scale * z @ targets.T
    return float(F.cross_entropy(logits, ids))


def fuse(stream_z: list[torch.Tensor], weights: tuple[float, ...]) -> torch.Tensor:
    """The fused unit vectors for one gate setting, by the head's own rule (``binder.heads.fuse``)."""
    return fuse_streams(torch.stack(stream_z), torch.tensor(weights))


def choose_gate(model: BindingModel, name: str, inputs: torch.Tensor, targets: torch.Tensor,
                ids: torch.Tensor) -> dict[str, Any]:
    """Set ``name``'s gate where the val pair loss is lowest and say what was compared.

    ``inputs`` are the val items preprocessed, ``targets``/``ids`` their distinct target embeddings
    and each row's index into them. Ties keep the learned gate, then the earlier grid point."""
    head = model.heads[name]
    if not isinstance(head, FusionHead):
        raise TypeError(f"{name} has one stream: there is no gate to choose")
    stream_z = []
    for stream in head.streams:
        with model.single_stream(name, stream):
            stream_z.append(embed_tensor(model, name, inputs).float())
    targets, scale = targets.float().cpu(), float(head.logit_scale.detach())
    learned = tuple(head.weights()[s] for s in head.streams)
    best, best_loss = learned, pair_loss(fuse(stream_z, learned), targets, ids, scale)
    learned_loss = best_loss
    for weights in simplex_grid(len(head.streams)):
        loss = pair_loss(fuse(stream_z, weights), targets, ids, scale)
        if loss < best_loss:
            best, best_loss = weights, loss
    head.set_weights(dict(zip(head.streams, best)))
    alone = {s: pair_loss(z, targets, ids, scale) for s, z in zip(head.streams, stream_z)}
    return {"chosen_on": "val pairs", "items": len(inputs), "learned": dict(zip(head.streams, learned)),
            "chosen": head.weights(), "val_loss": {"learned": learned_loss, "chosen": best_loss,
                                                   "streams": alone}}
