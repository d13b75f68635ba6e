"""The ranks of a training run: one process alone, or one of ``torchrun``'s processes.

``torchrun`` (one node or many) describes each process through the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); ``Ranks.from_env`` reads it, picks the device
(``cuda:LOCAL_RANK`` where CUDA is there, else the CPU) and joins the process group (nccl on
GPUs, gloo on CPUs). ``$ANYBIND_INIT_METHOD`` (e.g. ``file:///shared/rendezvous``) makes the
ranks meet on a shared file instead of the master's TCP port. Without those variables a run is
a world of one and nothing here talks to another process.

Every rank knows the rows of every step's global batch (they are a pure function of seed and
step), so the only thing ranks exchange besides DistributedDataParallel's gradients is the
embeddings each computed: ``gather_rows`` collects them, in rank order, whatever number of rows
each rank kept after dropping files that failed to decode.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from binder.errors import TrainingError

INIT_ENV = "ANYBIND_INIT_METHOD"


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and logs and draws the progress bar."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto", timeout_s: float = 1800.0) -> Ranks:
        """This process's ranks from torchrun's variables, joining the process group if there is one."""
        world = _env_int("WORLD_SIZE", 1)
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        local_world = _env_int("LOCAL_WORLD_SIZE", world)
        if not 0 <= rank < world or not 0 <= local_rank < local_world:
            raise TrainingError(f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world}, "
                                f"LOCAL_WORLD_SIZE={local_world}")
        dev = pick_device(device, local_rank)
        ranks = cls(rank, world, local_rank, local_world, dev)
        if ranks.distributed:
            ranks.join(timeout_s)
        return ranks

    def join(self, timeout_s: float) -> None:
        """Join the process group (once per process; a second trainer in the process reuses it)."""
        if dist.is_initialized():
            if dist.get_world_size() != self.world or dist.get_rank() != self.rank:
                raise TrainingError(f"a process group of {dist.get_world_size()} ranks is already open here, "
                                    f"but the environment says rank {self.rank} of {self.world}")
            return
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        init = os.environ.get(INIT_ENV)
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            if init:
                dist.init_process_group(backend, init_method=init, rank=self.rank, world_size=self.world,
                                        timeout=timeout)
            else:
                dist.init_process_group(backend, timeout=timeout)
        except (ValueError, RuntimeError) as exc:
            raise TrainingError(f"cannot join the {self.world}-rank process group ({backend}, "
                                f"{init or 'env://'}): {exc}") from None

    def leave(self) -> None:
        """Close the process group (at the end of a command; a library user may keep it open)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (filling caches on shared disks), the other ranks after it."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def counts(self, n: int) -> list[int]:
        """Every rank's ``n``, in rank order (the same list on every rank)."""
        if not self.distributed:
            return [n]
        t = torch.tensor([n], dtype=torch.long, device=self._comm_device)
        out = [torch.zeros_like(t) for _ in range(self.world)]
        dist.all_gather(out, t)
        return [int(x.item()) for x in out]

    def gather_rows(self, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Every rank's ``(n_r, ...)`` rows concatenated in rank order; ``counts`` are the n_r.

        Rows are padded to the largest n_r for the collective and cut back after, so ranks whose
        batches lost different numbers of failed files still exchange their rows. No gradient
        flows through: the trainer feeds each rank's share of the loss gradient back itself.
        """
        if not self.distributed:
            return x
        top = max(counts)
        pad = torch.zeros((top - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
        local = torch.cat([x.detach(), pad]).to(self._comm_device).contiguous()
        out = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(out, local)
        return torch.cat([o[:n] for o, n in zip(out, counts, strict=True)]).to(x.device)

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors across ranks in place (the gradients of parameters DDP does not hold)."""
        self.sum_(tensors, mean=True)

    def sum_(self, tensors: list[torch.Tensor], mean: bool = False) -> None:
        """Sum (or average) tensors across ranks in place."""
        if not self.distributed:
            return
        for t in tensors:
            buf = t.detach().to(self._comm_device)
            dist.all_reduce(buf)
            t.copy_(buf / self.world if mean else buf)

    def min_max(self, value: int) -> tuple[int, int]:
        """The smallest and largest ``value`` over the ranks (to check that they agree)."""
        counts = self.counts(value)
        return min(counts), max(counts)

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` where CUDA is present, else the CPU; ``cpu`` and ``cuda`` as named."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device = {device!r} but this machine has no CUDA device; "
                                f"use 'auto' or 'cpu'")
        if device == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise TrainingError(f"local rank {local_rank} has no GPU: this node has "
                                    f"{torch.cuda.device_count()}; start at most that many processes per node")
            return torch.device("cuda", local_rank)
        return torch.device(device)
    raise TrainingError(f"train.device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise TrainingError(f"${name} must be an integer, got {raw!r}") from None
