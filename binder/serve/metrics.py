"""Prometheus metrics of the server, kept in memory and rendered as the text exposition format.

Written by hand rather than with a client library: a few counters and histograms, thread-safe
(the encode worker, the decode threads and the event loop all record), with labels only from
closed sets (route templates, not raw paths; modality names; HTTP statuses).
"""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Cumulative-bucket histogram per label set."""

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def lines(self, name: str) -> list[str]:
        out = []
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f"{name}_bucket{_fmt(labels + (('le', le),))} {running}")
            out.append(f"{name}_sum{_fmt(labels)} {self.sums[labels]:.6f}")
            out.append(f"{name}_count{_fmt(labels)} {running}")
        return out


class Metrics:
    """Requests by route and status, request latency, encode batch sizes, and index gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[Labels, int] = defaultdict(int)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.encode_calls: dict[Labels, int] = defaultdict(int)
        self.reloads = 0
        self.gauges: dict[str, Callable[[], float]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        with self._lock:
            self.requests[(("route", route), ("method", method), ("status", str(status)))] += 1
            self.latency.observe((("route", route),), seconds)

    def encoded(self, modality: str, batch: int) -> None:
        """Count one encode call of ``batch`` items of ``modality``."""
        with self._lock:
            self.encode_calls[(("modality", modality),)] += 1
            self.batch_sizes.observe((("modality", modality),), batch)

    def reloaded(self) -> None:
        with self._lock:
            self.reloads += 1

    def total_encode_calls(self) -> int:
        with self._lock:
            return sum(self.encode_calls.values())

    def render(self) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        with self._lock:
            lines = _family("anybind_requests_total", "counter", "HTTP requests by route, method and status.",
                            [f"anybind_requests_total{_fmt(k)} {v}" for k, v in sorted(self.requests.items())])
            lines += _family("anybind_request_duration_seconds", "histogram", "Request latency by route.",
                             self.latency.lines("anybind_request_duration_seconds"))
            lines += _family("anybind_encode_batch_size", "histogram", "Items per model encode call.",
                             self.batch_sizes.lines("anybind_encode_batch_size"))
            lines += _family("anybind_encode_calls_total", "counter", "Model encode calls by modality.",
                             [f"anybind_encode_calls_total{_fmt(k)} {v}" for k, v in sorted(self.encode_calls.items())])
            lines += _family("anybind_index_reloads_total", "counter", "New index generations picked up.",
                             [f"anybind_index_reloads_total {self.reloads}"])
            gauges = dict(self.gauges)
        for name, read in sorted(gauges.items()):
            lines += _family(name, "gauge", GAUGE_HELP.get(name, name), [f"{name} {read():g}"])
        return "\n".join(lines) + "\n"


GAUGE_HELP = {
    "anybind_index_generation": "Generation of the index snapshot being served.",
    "anybind_index_rows": "Live rows of the index snapshot being served.",
    "anybind_batching_enabled": "1 when concurrent encodes are batched, 0 with --no-batching.",
    "anybind_encode_queue_depth": "Encode jobs waiting for the model.",
}


def _family(name: str, kind: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
