"""Mixed precision for training on GPUs: bf16 or fp16 autocast, fp32 everywhere else.

The encoders run under autocast; the loss, the optimizer and the saved weights stay fp32.
fp16 needs a gradient scaler (its range underflows small gradients); bf16 has fp32's range and
does not. On a CPU a run stays fp32: asking for bf16/fp16 there is an error rather than a run
that is silently something else than what the recipe says.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from binder.errors import TrainingError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision a run trains in on its device (``name`` is fp32, bf16 or fp16)."""

    name: str
    device: torch.device

    @classmethod
    def resolve(cls, wanted: str, device: torch.device) -> Precision:
        """``auto``: bf16 on GPUs that have it, else fp16 on a GPU, fp32 on a CPU."""
        if wanted not in PRECISIONS:
            raise TrainingError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {wanted!r}")
        if device.type != "cuda":
            if wanted in _DTYPES:
                raise TrainingError(f"train.precision = {wanted!r} needs a CUDA device; on {device.type} "
                                    f"training runs in fp32 (set precision = 'auto' or 'fp32')")
            return cls("fp32", device)
        if wanted == "auto":
            wanted = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return cls(wanted, device)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The context the encoders' forward passes run in."""
        if self.name == "fp32":
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.name]):
            yield

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler that is on for fp16 only (a disabled one passes values through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")
