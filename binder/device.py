"""Where inference runs: ``--device auto|cpu|cuda|cuda:N|mps`` (or ``$ANYBIND_DEVICE``), checked once.

``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU. A device torch cannot
use is a DeviceError that says what torch sees, before any model is read; so is ``int8``, a CPU
precision, on any other device.
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
    """DeviceError for a precision the device cannot run (int8 is a CPU path)."""
    if precision == "int8" and device.type != "cpu":
        raise DeviceError(f"--precision int8 runs on the CPU only; on {device} use fp32")
