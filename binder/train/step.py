"""One optimisation step of a binding: the same gradient on one process, on many ranks, and in
micro-batches.

Each rank encodes its share of the step's rows; the rows of all ranks are gathered and every
rank computes the loss over the whole global batch, so the negatives of each row are the global
batch (as with open_clip's gathered features). The loss is differentiated with respect to the
gathered embeddings and the logit scale, taken as leaves; each rank then feeds its own rows'
share of that gradient back through its encoders. DistributedDataParallel averages parameter
gradients over the ``W`` ranks, so a rank feeds back ``W`` times its rows' gradient: the average
of ``W · J_rᵀ g_r`` over ranks is ``Σ_r J_rᵀ g_r``, the gradient one process computes for the
whole batch.

Cutting the graph at the embeddings also makes gradient accumulation exact (``train.accumulate``,
the GradCache method): the embeddings of every micro-batch are computed without a graph, the loss
and its gradient once over all of them, then each micro-batch is encoded again with a graph and
its share of the gradient fed back. Memory is a micro-batch's, the negatives the whole batch's.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from binder.errors import ModalityError, TrainingError
from binder.model import BindingModel
from binder.train.amp import Precision
from binder.train.distributed import Ranks


@dataclass
class StepBatch:
    """What one rank holds of a step: its rows' inputs (None if every one failed), the targets and
    target ids of the global batch, and where its rows sit in that batch."""

    name: str
    inputs: torch.Tensor | None
    targets: torch.Tensor
    ids: torch.Tensor
    counts: list[int]
    rank: int

    @property
    def offset(self) -> int:
        return sum(self.counts[:self.rank])

    @property
    def total(self) -> int:
        return sum(self.counts)


class EncodeStep(nn.Module):
    """What DistributedDataParallel wraps: one modality's encoder, returning the embeddings and the
    logit scale so that every trainable parameter a step uses is reachable from its output."""

    def __init__(self, model: BindingModel):
        super().__init__()
        self.model = model

    def forward(self, name: str, inputs: torch.Tensor | None, token_drop: float, seed: int,
                window: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor]:
        scale = self.model.logit_scale(name)
        if inputs is None:  # this rank kept no rows: it still has to join DDP's gradient reduction
            return None, scale + 0.0 * self._tether(name)
        gen = torch.Generator().manual_seed(seed)
        return self.model.encode(name, inputs, token_drop, gen, window=window), scale

    def _tether(self, name: str) -> torch.Tensor:
        """One trainable value of the modality (a zero-weighted term): its backward fires DDP's hooks,
        so a rank whose rows all failed still takes part in the reduction (with zero gradients)."""
        for part in (self.model.heads, self.model.tokenizers):
            if name in part:
                for p in part[name].parameters():
                    if p.requires_grad:
                        return p.reshape(-1)[0]
        return torch.zeros(())


class StepRunner:
    """Forward, loss and backward of one step; the caller zeroes gradients and steps the optimizer."""

    def __init__(self, model: BindingModel, losses: nn.ModuleDict, ranks: Ranks, precision: Precision,
                 accumulate: int = 1, token_drop: float = 0.0):
        self.model, self.losses, self.ranks, self.precision = model, losses, ranks, precision
        self.accumulate, self.token_drop = max(1, accumulate), token_drop
        self.encoder = EncodeStep(model)
        self.scaler = precision.scaler()
        self.ddp: EncodeStep | DistributedDataParallel = self.encoder
        if ranks.distributed:  # frozen weights are the same on every rank (seeded, or read from one file)
            frozen = [n for n, p in self.encoder.named_parameters() if not p.requires_grad]
            frozen += [n for n, _ in self.encoder.named_buffers()]
            # Private torch API, the only way to keep frozen weights out of DDP's buckets and its start-up
            # broadcast (a large frozen trunk); tests/test_private_torch.py fails if it changes.
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.encoder, frozen)
            cuda = ranks.device.type == "cuda"
            self.ddp = DistributedDataParallel(self.encoder, device_ids=[ranks.device] if cuda else None,
                                               find_unused_parameters=True, broadcast_buffers=False)

    def run(self, batch: StepBatch, seed: int) -> float:
        """Accumulate this step's gradients into the parameters; return the (global) loss."""
        chunks = self._chunks(batch)
        if len(chunks) == 1:  # one pass, with a graph
            with self.precision.autocast():
                z, scale = self.ddp(batch.name, batch.inputs, self.token_drop, seed, (batch.offset, batch.total))
            loss, grad, scale_grad = self._loss(batch, z, scale)
            self._feed_back(z, grad, scale, scale_grad)
            return loss
        z = self._encode_without_graph(batch, chunks, seed)
        loss, grad, scale_grad = self._loss(batch, z, self.model.logit_scale(batch.name))
        for i, (lo, hi) in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = self.ddp.no_sync() if isinstance(self.ddp, DistributedDataParallel) and not last \
                else contextlib.nullcontext()
            with sync:
                inputs = None if batch.inputs is None else batch.inputs[lo:hi]
                with self.precision.autocast():
                    zi, scale = self.ddp(batch.name, inputs, self.token_drop, seed, (batch.offset + lo, batch.total))
                self._feed_back(zi, None if zi is None else grad[lo:hi], scale if last else None, scale_grad)
        return loss

    def _chunks(self, batch: StepBatch) -> list[tuple[int, int]]:
        """Row ranges of this rank's micro-batches: ``accumulate`` of them (fewer if rows are few)."""
        n = 0 if batch.inputs is None else batch.inputs.shape[0]
        if n == 0:
            return [(0, 0)]
        bounds = torch.linspace(0, n, min(self.accumulate, n) + 1).round().long().tolist()
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def _encode_without_graph(self, batch: StepBatch, chunks: list[tuple[int, int]], seed: int) -> torch.Tensor | None:
        if batch.inputs is None:
            return None
        zs = []
        with torch.no_grad(), self.precision.autocast():
            for lo, hi in chunks:
                gen = torch.Generator().manual_seed(seed)
                try:
                    zs.append(self.model.encode(batch.name, batch.inputs[lo:hi], self.token_drop, gen,
                                                window=(batch.offset + lo, batch.total)))
                except ModalityError:  # the model's own non-finite check: let the loss check stop every rank
                    zs.append(torch.full((hi - lo, batch.targets.shape[1]), float("nan"),
                                         device=batch.targets.device))
        return torch.cat(zs)

    def _loss(self, batch: StepBatch, z: torch.Tensor | None, scale: torch.Tensor
              ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The global batch's loss, and its gradient w.r.t. this rank's rows and the scale, both
        as this rank feeds them back (× W, for DDP's average)."""
        dim, world = batch.targets.shape[1], self.ranks.world
        local = z.float() if z is not None else torch.zeros(0, dim, device=batch.targets.device)
        scale_leaf = scale.detach().float().requires_grad_()
        loss_fn = self.losses[batch.name]
        rowwise = getattr(loss_fn, "rowwise", False)
        if rowwise:  # a sum over rows (SigLIP): this rank's rows against every target
            leaf = local.detach().requires_grad_()
            loss = loss_fn(leaf, batch.targets, batch.ids, scale_leaf, rows=(batch.offset, batch.total))
            total = loss.detach().clone().reshape(1)
            self.ranks.sum_([total])
        else:  # softmax losses normalize each row over the whole batch: every rank computes all of it
            leaf = self.ranks.gather_rows(local, batch.counts).detach().requires_grad_()
            loss = loss_fn(leaf, batch.targets, batch.ids, scale_leaf)
            total = loss.detach().reshape(1)
        if not bool(torch.isfinite(total).all()):
            raise TrainingError(f"{batch.name}: the training diverged: the loss is {float(total)}; lower train.lr")
        self.scaler.scale(loss).backward()
        assert leaf.grad is not None and scale_leaf.grad is not None
        own = [p.grad for p in loss_fn.parameters() if p.grad is not None]
        if rowwise:  # every rank holds its rows' part of these gradients: they add up
            self.ranks.sum_(own)
            return float(total), leaf.grad * world, scale_leaf.grad * world
        self.ranks.average_(own)  # the same on every rank; averaged against drift
        lo = batch.offset
        return float(total), leaf.grad[lo:lo + local.shape[0]] * world, scale_leaf.grad

    def _feed_back(self, z: torch.Tensor | None, grad: torch.Tensor | None,
                   scale: torch.Tensor | None, scale_grad: torch.Tensor) -> None:
        outputs, grads = [], []
        if z is not None and grad is not None:
            outputs.append(z)
            grads.append(grad.to(z.dtype))
        if scale is not None and scale.requires_grad:
            outputs.append(scale)
            grads.append(scale_grad.to(scale.dtype))
        if outputs:
            torch.autograd.backward(outputs, grads)

    def step_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale (fp16), step and update the scaler; a plain step when there is no scaler."""
        self.scaler.step(optimizer)
        self.scaler.update()
