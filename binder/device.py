"""Where inference runs: ``--device auto|cpu|cuda|cuda:N|mps`` (or ``$ANYBIND_DEVICE``), checked once.

``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU. A device torch cannot
use is a DeviceError that says what torch sees, before any model is read; so is ``int8``, a CPU
precision, on any other device, and ``bf16`` on a GPU without it. ``resolve_precision`` turns the
precision ``auto`` into the one the device runs best.
"""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from binder.errors import AnybindError

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "ANYBIND_DEVICE"
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(AnybindError):
    """A device that does not exist here, or a precision that device cannot run."""


def device_spec(spec: str | None) -> str:
    """``spec`` as given, else ``$ANYBIND_DEVICE``, else ``auto``."""
    return (spec or os.environ.get(DEVICE_ENV) or "auto").strip().lower()


def resolve_device(spec: str | None = None) -> torch.device:
    """The torch device ``spec`` (see ``device_spec``) names; DeviceError when torch cannot use it."""
    import torch

    name = device_spec(spec)
    if not _SPEC.match(name):
        raise DeviceError(f"unknown device {name!r}; choose {DEVICE_CHOICES}")
    cuda, count = torch.cuda.is_available(), torch.cuda.device_count()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda"):
        if not cuda:
            raise DeviceError(f"--device {name}: torch sees no CUDA device (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise DeviceError(f"--device {name}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if name == "mps" and not mps:
        raise DeviceError("--device mps: this torch build or machine has no MPS device; use --device cpu")
    return torch.device(name)


def check_device_precision(device: torch.device, precision: str) -> None:
    """DeviceError for a precision the device cannot run: int8 is a CPU path, and bf16 needs a GPU
    whose arithmetic has it (CUDA from Ampere on, MPS from macOS 14; every CPU runs it)."""
    if precision == "int8" and device.type != "cpu":
        raise DeviceError(f"--precision int8 runs on the CPU only; on {device} use fp16, bf16 or fp32")
    if precision == "bf16" and not bf16_supported(device):
        raise DeviceError(f"--precision bf16: {device} has no native bfloat16 arithmetic; use fp16 or fp32")


def resolve_precision(device: torch.device, precision: str) -> str:
    """The precision ``precision`` names on ``device``: ``auto`` is bf16 on a GPU that has it, else
    fp16 on a GPU, and fp32 on the CPU (half precision on a CPU is slower, int8 is the CPU's fast
    path and is asked for by name); any other name is checked (``check_device_precision``) and kept."""
    if precision == "auto":
        if device.type == "cpu":
            return "fp32"
        return "bf16" if bf16_supported(device) else "fp16"
    check_device_precision(device, precision)
    return precision


def placement(spec: str | None, precision: str) -> tuple[torch.device, str]:
    """(device, precision) an inference job runs at: ``spec`` resolved (``resolve_device``) and
    ``precision``, checked against ``INFERENCE_PRECISIONS``, resolved for that device
    (``resolve_precision``). Every refusal is an error of one line, raised before any model is read."""
    from binder.precision import check_precision

    where = resolve_device(spec)
    return where, resolve_precision(where, check_precision(precision))


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (not emulated)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "mps":
        try:
            torch.ones(1, dtype=torch.bfloat16, device=device)
        except (RuntimeError, TypeError):
            return False
    return True
