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
