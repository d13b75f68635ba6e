"""``ServeConfig``: everything ``anybind serve`` can be told, with its defaults and their bounds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from binder.config import INFERENCE_PRECISIONS

DEFAULT_HOST = "127.0.0.1"  # loopback: nothing outside the machine reaches the server unless asked
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs.

    ``index`` is an index folder (``anybind index build``). ``model`` is a model folder or known
    name, used when the index records none (else ``$ANYBIND_MODEL``, else the untrained default).
    ``token`` (None: open) is required as ``Authorization: Bearer TOKEN`` on every API route but
    ``/healthz``. Concurrent encodes are gathered for ``batch_window_ms`` after the first one
    arrives, up to ``max_batch`` items per modality (``batching=False``: one item per encode, for
    comparison). A request body or upload over ``max_upload_mb`` is refused with 413. The encode
    worker runs torch on ``threads`` threads (default: every core but one, which the event loop
    and the decode threads need: torch threads that outnumber free cores spin and slow down).
    The work of one request (decoding and encoding its inputs) may take at most
    ``request_timeout_s``; past that it is stopped and answered 503 (``timeout``). ``/classify``
    takes at most ``max_classify_prompts`` prompts (labels × templates); more is a 413.
    The model runs on ``device`` (a ``binder.device`` spec; None: ``$ANYBIND_DEVICE``, else auto: a
    GPU when torch sees one) at ``precision`` (one of ``INFERENCE_PRECISIONS``; ``auto``: half
    precision on a GPU, fp32 on the CPU); both are checked before the server starts
    (``binder.serve.loading.serve_device``).
    """

    index: Path
    model: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    batching: bool = True
    batch_window_ms: float = 5.0
    max_batch: int = 32
    max_upload_mb: float = 32.0
    decode_workers: int = 2
    threads: int | None = None  # torch threads of the encode worker; None: every core but one (at least 1)
    backend: str = "auto"
    max_k: int = 1000
    precision: str = "auto"
    device: str | None = None  # a binder.device spec; None: $ANYBIND_DEVICE, else auto
    quiet: bool = False
    request_timeout_s: float = 30.0
    max_classify_prompts: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", Path(self.index))
        if self.token is not None and not self.token.strip():
            raise ValueError("token: give a non-empty token, or none for an open server")
        for name, value, low in (("batch_window_ms", self.batch_window_ms, 0.0),
                                 ("max_upload_mb", self.max_upload_mb, 1e-3),
                                 ("request_timeout_s", self.request_timeout_s, 1e-3)):
            if not math.isfinite(value) or value < low or value > 1e6:
                raise ValueError(f"{name}: {value} is out of range ({low} to 1e6)")
        for name, count in (("max_batch", self.max_batch), ("decode_workers", self.decode_workers),
                            ("max_k", self.max_k), ("threads", 1 if self.threads is None else self.threads),
                            ("max_classify_prompts", self.max_classify_prompts)):
            if count < 1:
                raise ValueError(f"{name}: must be at least 1 (got {count})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not a TCP port")
        if self.precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision: {self.precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")

    @property
    def max_upload_bytes(self) -> int:
        """The largest decoded upload, in bytes."""
        return int(self.max_upload_mb * (1 << 20))

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: one upload base64-encoded in JSON (4/3), plus 64 KiB of fields."""
        return self.max_upload_bytes * 4 // 3 + (64 << 10)

    @property
    def batch_size(self) -> int:
        """Items per encode: ``max_batch`` with batching, else 1."""
        return self.max_batch if self.batching else 1
