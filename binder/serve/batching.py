"""One worker thread owns the model; concurrent requests' encodes are gathered into batches, and
heavy requests take turns with light ones.

Request handlers decode their inputs elsewhere (``ServeState.decode``) and ``submit`` one
preprocessed tensor each, getting a ``Future`` of its unit vector. The worker takes the first job
that arrives, waits up to the batching window for more (at most ``max_batch`` in all), groups them
by modality and runs one ``encode_rows`` per group: a batch of B costs far less than B single
encodes, so throughput under load rises while a lone request waits at most the window. The model
stays on the device it was placed on (``anybind serve --device``): the batches are collated on
the CPU, ``encode_rows`` sends each one to ``model.input_device`` and hands the embeddings back
on the CPU, so only the worker thread ever touches the device.

Jobs come in two lanes. ``LIGHT`` (the default) holds what one interactive request needs: a
query, an upload, a few inputs. ``BULK`` holds the parts of heavy requests (the label sets of
``/classify``, encoded in chunks; embeddings requests of many inputs). When both lanes hold work
the worker alternates between them, one batch or call at a time, so a heavy request slows a light
one by at most one chunk of its own, never by all of it, and light requests, however many, cannot
starve heavy ones either.

``max_batch=1`` is the unbatched comparison: every job is its own encode, on the same thread.
Anything else that must touch the model (label embeddings for classification) goes through
``call`` so the model is never used from two threads at once. A job whose future was cancelled
before the worker reached it (its request timed out or went away) is skipped.

A batch the device has no memory for is encoded in halves, and later batches are cut to the size
that fitted (``binder.embed.feed.BatchLimit``); only an item that does not fit alone fails. A batch
the encoder refuses otherwise is retried one item at a time, so the error lands on the
request that caused it; a row the model turns into NaN/Inf fails only its own request. The worker
never dies of a request: unexpected errors are set on the futures and it goes on.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from binder.embed.feed import BatchLimit, is_out_of_memory, release_cached
from binder.errors import AnybindError, ModalityError
from binder.model import NON_FINITE
from binder.serve.errors import ServeError
from binder.serve.metrics import Metrics

ENCODE_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, AnybindError)
LIGHT, BULK = "light", "bulk"
LANES = (LIGHT, BULK)


@dataclass
class EncodeJob:
    """One preprocessed item (no batch dimension) of ``modality`` and the future of its vector."""

    modality: str
    tensor: torch.Tensor
    future: Future


@dataclass
class CallJob:
    """A function of the model to run on the worker thread."""

    fn: Callable[[Any], Any]
    future: Future


class Batcher:
    """The model's only user: a worker thread running batched encodes per modality, two lanes."""

    def __init__(self, model: Any, *, window_s: float = 0.005, max_batch: int = 32,
                 metrics: Metrics | None = None, threads: int | None = None):
        self.model = model
        self.window_s = max(0.0, window_s)
        self.max_batch = max(1, max_batch)
        self.limit = BatchLimit()  # the largest batch the device took since an out-of-memory error
        self.metrics = metrics or Metrics()
        self._threads = threads
        self._cond = threading.Condition()
        self._lanes: dict[str, deque[EncodeJob | CallJob]] = {lane: deque() for lane in LANES}
        self._last = BULK  # when both lanes wait, the light one goes first
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="anybind-encode", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting for the worker (both lanes)."""
        with self._cond:
            return sum(len(q) for q in self._lanes.values())

    def submit(self, modality: str, tensor: torch.Tensor, lane: str = LIGHT) -> Future:
        """The future unit vector (float32 numpy, shape (D,)) of one preprocessed item."""
        return self._put(EncodeJob(modality, tensor, Future()), lane)

    def call(self, fn: Callable[[Any], Any], lane: str = LIGHT) -> Future:
        """The future result of ``fn(model)``, run on the worker thread between batches."""
        return self._put(CallJob(fn, Future()), lane)

    def _put(self, job: EncodeJob | CallJob, lane: str) -> Future:
        with self._cond:
            if self._closed:
                raise ServeError("the server is shutting down", status=503, kind="unavailable")
            self._lanes[lane].append(job)
            self._cond.notify()
        return job.future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then stop the worker."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        while (jobs := self._next()) is not None:
            self._execute(jobs)

    def _next(self) -> list[Any] | None:
        """The next jobs to run (one batch or one call), from the lane whose turn it is; None once
        closed with nothing left."""
        with self._cond:
            while not any(self._lanes.values()):
                if self._closed:
                    return None
                self._cond.wait()
            light, bulk = self._lanes[LIGHT], self._lanes[BULK]
            lane = (LIGHT if self._last == BULK else BULK) if light and bulk else (LIGHT if light else BULK)
            self._last = lane
            queue = self._lanes[lane]
            jobs: list[Any] = [queue.popleft()]
            if not isinstance(jobs[0], EncodeJob) or self.max_batch == 1:
                return jobs
            deadline = time.monotonic() + (self.window_s if lane == LIGHT else 0.0)
            while len(jobs) < self.max_batch:
                if queue:
                    if not isinstance(queue[0], EncodeJob):
                        break
                    jobs.append(queue.popleft())
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)  # the window: more of this lane may come
            return jobs

    def _execute(self, jobs: list[Any]) -> None:
        groups: dict[str, list[EncodeJob]] = {}
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue  # its request went away
            if isinstance(job, CallJob):
                _settle(job.future, job.fn, self.model)
            else:
                groups.setdefault(job.modality, []).append(job)
        for name, group in groups.items():
            self._encode(name, group)

    def _encode(self, name: str, jobs: list[EncodeJob]) -> None:
        """Encode ``jobs`` (all of modality ``name``) in batches no larger than the device has shown
        it can take (``BatchLimit``); results or errors on their futures."""
        self.metrics.encoded(name, len(jobs))
        for piece in self.limit.pieces(len(jobs)):
            self._encode_batch(name, jobs[piece.start:piece.stop])

    def _encode_batch(self, name: str, jobs: list[EncodeJob]) -> None:
        """One encode of ``jobs``; on a device out-of-memory error, halves (``binder.embed.feed``)."""
        try:
            batch = self.model.modality(name).collate([j.tensor for j in jobs])
            z, bad = self.model.encode_rows(name, batch)
            emb = z.float().cpu().numpy()
        except Exception as exc:  # out-of-memory halves; the rest is sorted below
            if not is_out_of_memory(exc):
                self._failed(name, jobs, exc)
                return
            release_cached(self.model.input_device)
            if len(jobs) == 1:
                jobs[0].future.set_exception(ModalityError(None, f"does not fit in {self.model.input_device} "
                                                                 f"memory even alone ({type(exc).__name__})"))
                return
            self.limit.halve(len(jobs))
            for piece in self.limit.pieces(len(jobs)):
                self._encode_batch(name, jobs[piece.start:piece.stop])
            return
        for i, job in enumerate(jobs):
            if i in bad:
                job.future.set_exception(ModalityError(None, NON_FINITE))
            else:
                job.future.set_result(np.array(emb[i], dtype=np.float32))

    def _failed(self, name: str, jobs: list[EncodeJob], exc: Exception) -> None:
        """A batch the encoder refused: each item alone, so the error lands on its own request."""
        if isinstance(exc, ENCODE_ERRORS):
            if len(jobs) > 1:
                for job in jobs:
                    self._encode_batch(name, [job])
                return
            jobs[0].future.set_exception(_encode_error(exc))
            return
        for job in jobs:  # a bug: every request of the batch gets it, the worker goes on
            job.future.set_exception(exc)


def _settle(future: Future, fn: Callable[[Any], Any], model: Any) -> None:
    try:
        future.set_result(fn(model))
    except Exception as exc:  # delivered to the caller, never swallowed
        future.set_exception(exc)


def _encode_error(exc: BaseException) -> AnybindError:
    if isinstance(exc, AnybindError):
        return exc
    return ModalityError(None, f"cannot encode: {type(exc).__name__}: {exc}"[:500])
