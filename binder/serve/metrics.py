"""Prometheus metrics of the server, kept with ``prometheus_client`` in a registry of the app's own.

Each ``Metrics`` holds its own ``CollectorRegistry`` (never the process-wide default one), so two
apps in one process (the tests start many) count apart. Everything is thread-safe (the encode
worker, the decode threads and the event loop all record), and labels come only from closed sets:
route templates (never raw paths), modality names, HTTP statuses.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CLIENT_CLOSED = 499  # the status counted for a request whose client went away before its answer (nginx's)

GAUGE_HELP = {
    "anybind_index_generation": "Generation of the index snapshot being served.",
    "anybind_index_rows": "Live rows of the index snapshot being served.",
    "anybind_batching_enabled": "1 when concurrent encodes are batched, 0 with --no-batching.",
    "anybind_encode_queue_depth": "Encode jobs waiting for the model.",
}


class Metrics:
    """Requests by route and status, request latency, encode batch sizes, and index gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("anybind_requests_total", "HTTP requests by route, method and status.",
                                 ("route", "method", "status"), registry=self.registry)
        self._latency = Histogram("anybind_request_duration_seconds", "Request latency by route.", ("route",),
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._batch_sizes = Histogram("anybind_encode_batch_size", "Items per model encode call.", ("modality",),
                                      buckets=BATCH_BUCKETS, registry=self.registry)
        self._encode_calls = Counter("anybind_encode_calls_total", "Model encode calls by modality.", ("modality",),
                                     registry=self.registry)
        self._reloads = Counter("anybind_index_reloads_total", "New index generations picked up.",
                                registry=self.registry)
        self._lock = threading.Lock()
        self._calls = 0
        self._gauges: dict[str, Gauge] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def encoded(self, modality: str, batch: int) -> None:
        """Count one encode call of ``batch`` items of ``modality``."""
        self._encode_calls.labels(modality).inc()
        self._batch_sizes.labels(modality).observe(batch)
        with self._lock:
            self._calls += 1

    def reloaded(self) -> None:
        self._reloads.inc()

    def total_encode_calls(self) -> int:
        with self._lock:
            return self._calls

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """A gauge whose value is ``read()`` at each scrape (``GAUGE_HELP`` gives its help text)."""
        if name not in self._gauges:
            self._gauges[name] = Gauge(name, GAUGE_HELP.get(name, name), registry=self.registry)
        self._gauges[name].set_function(read)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) of the metrics in the exposition format ``accept`` asks for
        (Prometheus text by default, OpenMetrics when a scraper asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
