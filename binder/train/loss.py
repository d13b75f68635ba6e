"""Symmetric InfoNCE between a modality's embeddings and its frozen anchor targets.

Built on pytorch-metric-learning's NTXentLoss (a maintained, tested InfoNCE) with a dot-product
similarity, so the logit scale is applied to the unit vectors themselves and stays learnable per
modality. With ``memory_size > 0`` a CrossBatchMemory queue of past targets adds negatives to
the modality → anchor direction (the targets are frozen, so queued ones never go stale).
"""
from __future__ import annotations

import torch
from pytorch_metric_learning.distances import DotProductSimilarity
from pytorch_metric_learning.losses import CrossBatchMemory, NTXentLoss
from torch import nn


class BindingLoss(nn.Module):
    """``forward(z, targets, ids, scale)``: z and targets are (B, D) unit vectors; ``ids`` name each
    target (rows with the same id are the same target and count as positives for each other).
    ``frozen_targets=False`` lets gradients reach the targets too (training an anchor itself)."""

    def __init__(self, embed_dim: int, memory_size: int = 0, frozen_targets: bool = True):
        super().__init__()
        self.frozen_targets = frozen_targets
        self.infonce = NTXentLoss(temperature=1.0, distance=DotProductSimilarity(normalize_embeddings=False))
        self.memory = None
        if memory_size:
            inner = NTXentLoss(temperature=1.0, distance=DotProductSimilarity(normalize_embeddings=False))
            self.memory = CrossBatchMemory(inner, embed_dim, memory_size=memory_size)

    def forward(self, z: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        if self.frozen_targets:
            targets = targets.detach()
        back = self.infonce(targets * scale, ids, ref_emb=z, ref_labels=ids.clone())
        if self.memory is None:
            forth = self.infonce(z * scale, ids, ref_emb=targets, ref_labels=ids.clone())
        else:
            n = z.shape[0]
            enqueue = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(z.device)
            forth = self.memory(torch.cat([z * scale, targets]), torch.cat([ids, ids]), enqueue_mask=enqueue)
        return (forth + back) / 2

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """The queue of past targets (and where it is), so that a resumed run continues it exactly."""
        if self.memory is None:
            return {}
        m = self.memory
        return {"embeddings": m.embedding_memory, "labels": m.label_memory,
                "queue_idx": torch.tensor(int(m.queue_idx)), "filled": torch.tensor(bool(m.has_been_filled))}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.memory is None:
            if state:
                raise ValueError("the saved loss has a memory queue but this one has none")
            return
        if not state:
            raise ValueError("the saved loss has no memory queue but this one has")
        m = self.memory
        if tuple(state["embeddings"].shape) != tuple(m.embedding_memory.shape):
            raise ValueError(f"memory queue of shape {tuple(state['embeddings'].shape)}, "
                             f"expected {tuple(m.embedding_memory.shape)}")
        m.embedding_memory = state["embeddings"].clone()
        m.label_memory = state["labels"].clone()
        m.queue_idx = int(state["queue_idx"])
        m.has_been_filled = bool(state["filled"])
