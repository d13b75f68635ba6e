"""The thread pool that decodes files while the model encodes.

Decoding (audio resampling, image resizing, video frames) runs torch and numpy kernels. Each
decode thread is given one intra-op torch thread: without that, every decode thread fans out to all
cores and fights the encoder and the other decode threads for them, which measured slower than
decoding on a single thread.

torch keeps the thread count per thread, but ``torch.set_num_threads`` also records it as the
count a thread takes when it first runs torch. The pool therefore lets the calling thread take its
count before any worker starts and records the caller's count again when the pool closes, so
neither the encoder nor threads started later run on one thread by accident.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


def single_threaded_worker() -> None:
    """Thread initializer: one intra-op torch thread for this thread."""
    torch.set_num_threads(1)


@contextmanager
def decode_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` (at least 1) decode threads, each with one torch thread."""
    keep = torch.get_num_threads()  # also settles this thread's own count before workers change the default
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), initializer=single_threaded_worker,
                                thread_name_prefix="anybind-decode") as pool:
            yield pool
    finally:
        torch.set_num_threads(keep)
