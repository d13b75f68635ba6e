"""The binding losses between a modality's embeddings and its frozen anchor targets.

``BindingLoss`` is symmetric InfoNCE, built on pytorch-metric-learning's NTXentLoss (a
maintained, tested InfoNCE) with a dot-product similarity, so the logit scale is applied to the
unit vectors themselves and stays learnable per modality. With ``memory_size > 0`` a
CrossBatchMemory queue of past targets adds negatives to the modality → anchor direction (the
targets are frozen, so queued ones never go stale).

``SigmoidLoss`` is SigLIP's pairwise sigmoid loss: every (embedding, target) pair is its own
binary problem, so no row is normalized against the others. That makes it a sum over rows: a
rank computes the terms of its own rows against every target of the global batch and the sum
over ranks is the loss of the whole batch (SigLIP's chunked form; here the targets are frozen
and known to every rank, so no chunk has to travel between ranks).

``SoftTargetLoss`` is symmetric InfoNCE whose labels are soft: the anchor's own similarities
between the batch's targets, sharpened by a temperature. Targets the anchor sees as alike (two
photos of one thing) are then partial positives rather than negatives, so the binding learns the
anchor's neighbourhoods and not just its pairs; no label or text is used, only the targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import DotProductSimilarity
from pytorch_metric_learning.losses import CrossBatchMemory, NTXentLoss
from torch import nn

from binder.errors import CheckpointError, ConfigError

LOSSES = ("infonce", "siglip")
SOFT_TARGETS_MAX = 1.0  # above this the soft labels are close to uniform: nothing left to learn
SIGLIP_SCALE = 10.0  # SigLIP's initial temperature t = exp(t'), t' = log 10
SIGLIP_BIAS = -10.0  # and its initial bias: most pairs are negatives, so start by calling them so


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
                raise CheckpointError("the saved loss has a memory queue but this one has none")
            return
        if not state:
            raise CheckpointError("the saved loss has no memory queue but this one has")
        m = self.memory
        if tuple(state["embeddings"].shape) != tuple(m.embedding_memory.shape):
            raise CheckpointError(f"memory queue of shape {tuple(state['embeddings'].shape)}, "
                             f"expected {tuple(m.embedding_memory.shape)}")
        m.embedding_memory = state["embeddings"].clone()
        m.label_memory = state["labels"].clone()
        m.queue_idx = int(state["queue_idx"])
        m.has_been_filled = bool(state["filled"])


class TargetQueue(nn.Module):
    """A ring buffer of the last ``size`` targets and their ids (negatives from past batches)."""

    def __init__(self, embed_dim: int, size: int):
        super().__init__()
        self.size = size
        self.embeddings = torch.zeros(size, embed_dim)
        self.labels = torch.zeros(size, dtype=torch.long)
        self.index, self.filled = 0, False

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.size if self.filled else self.index
        return self.embeddings[:n], self.labels[:n]

    def push(self, targets: torch.Tensor, ids: torch.Tensor) -> None:
        targets, ids = targets.detach()[-self.size:], ids.detach()[-self.size:]
        self.embeddings, self.labels = self.embeddings.to(targets), self.labels.to(ids.device)
        slots = (self.index + torch.arange(len(ids))) % self.size
        self.embeddings[slots], self.labels[slots] = targets, ids
        self.filled = self.filled or self.index + len(ids) >= self.size
        self.index = int((self.index + len(ids)) % self.size)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"embeddings": self.embeddings, "labels": self.labels, "queue_idx": torch.tensor(self.index),
                "filled": torch.tensor(self.filled)}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if tuple(state["embeddings"].shape) != tuple(self.embeddings.shape):
            raise CheckpointError(f"memory queue of shape {tuple(state['embeddings'].shape)}, "
                             f"expected {tuple(self.embeddings.shape)}")
        self.embeddings, self.labels = state["embeddings"].clone(), state["labels"].clone()
        self.index, self.filled = int(state["queue_idx"]), bool(state["filled"])


class SigmoidLoss(nn.Module):
    """SigLIP: ``-Σ_ij log σ(l_ij (t·z_i·y_j + b)) / B`` with l_ij = 1 for pairs of the same
    target id and -1 otherwise, t the modality's logit scale (initialized to 10 by the recipe)
    and a learnable bias b (initialized to -10). ``forward(z, targets, ids, scale, rows=None)``:
    ``rows = (start, total)`` says ``z`` are rows ``start...`` of a global batch of ``total``
    whose targets and ids are given whole; the result is then those rows' share of its loss.
    With ``memory_size > 0`` queued past targets add negative (or same-id positive) pairs.
    """

    rowwise = True  # a sum over rows: each rank computes its own rows (binder.train.step)

    def __init__(self, embed_dim: int, memory_size: int = 0, bias: float = SIGLIP_BIAS):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.memory = TargetQueue(embed_dim, memory_size) if memory_size else None

    def forward(self, z: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor,
                rows: tuple[int, int] | None = None) -> torch.Tensor:
        start, total = rows or (0, z.shape[0])
        targets = targets.detach()
        own = ids[start:start + z.shape[0]]
        columns, column_ids = targets, ids
        if self.memory is not None:
            queued, queued_ids = self.memory.contents()
            columns, column_ids = torch.cat([targets, queued.to(targets)]), torch.cat([ids, queued_ids.to(ids.device)])
            self.memory.push(targets, ids)
        logits = scale * z @ columns.T + self.bias
        signs = (own[:, None] == column_ids[None, :]).to(logits.dtype) * 2 - 1
        return -F.logsigmoid(signs * logits).sum() / total


class SoftTargetLoss(nn.Module):
    """``forward(z, targets, ids, scale)`` as ``BindingLoss``; the label of pair (i, j) is
    ``softmax_j(y_i·y_j / temperature)`` over the targets y, the same in both directions. As the
    temperature goes to 0 this is InfoNCE with same-target rows as positives. With
    ``memory_size > 0`` queued past targets add columns (and soft labels) to the modality → anchor
    direction."""

    def __init__(self, embed_dim: int, memory_size: int = 0, temperature: float = 0.05):
        super().__init__()
        if not 0 < temperature <= SOFT_TARGETS_MAX:
            raise ConfigError(f"train.soft_targets must be in (0, {SOFT_TARGETS_MAX}], got {temperature}")
        self.temperature = temperature
        self.memory = TargetQueue(embed_dim, memory_size) if memory_size else None

    def forward(self, z: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        targets = targets.detach()
        labels = self.labels(targets, targets)
        back = F.cross_entropy(scale * targets @ z.T, labels)
        columns, column_labels = targets, labels
        if self.memory is not None:
            queued, _ = self.memory.contents()
            columns = torch.cat([targets, queued.to(targets)])
            column_labels = self.labels(targets, columns)
            self.memory.push(targets, ids)
        forth = F.cross_entropy(scale * z @ columns.T, column_labels)
        return (forth + back) / 2

    def labels(self, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Each row's distribution over ``columns``: how alike the anchor finds them."""
        return torch.softmax(rows @ columns.T / self.temperature, dim=1)


def check_soft_targets(loss: str, soft_targets: float) -> None:
    """``train.soft_targets`` in [0, SOFT_TARGETS_MAX] (0 = one-hot labels), and only with InfoNCE."""
    if not 0 <= soft_targets <= SOFT_TARGETS_MAX:
        raise ConfigError(f"train.soft_targets must be in [0, {SOFT_TARGETS_MAX}] (0 = one-hot labels), "
                          f"got {soft_targets}")
    if soft_targets and loss != "infonce":
        raise ConfigError(f"train.soft_targets is an InfoNCE option; train.loss is {loss!r}")


def make_loss(name: str, embed_dim: int, memory_size: int = 0, soft_targets: float = 0.0) -> nn.Module:
    """The binding loss ``train.loss`` names: "infonce" (the default; with ``soft_targets`` > 0 its
    labels are the anchor's target similarities at that temperature) or "siglip"."""
    check_soft_targets(name, soft_targets)
    if name == "infonce" and soft_targets:
        return SoftTargetLoss(embed_dim, memory_size, soft_targets)
    if name == "infonce":
        return BindingLoss(embed_dim, memory_size)
    if name == "siglip":
        return SigmoidLoss(embed_dim, memory_size)
    raise ConfigError(f"train.loss must be one of {', '.join(LOSSES)}, got {name!r}")
