"""Prometheus metrics of one server: request latency, errors, online cache hits and misses.

Latency is a histogram per route and status (`histogram_quantile` works on it), plus gauges
with the p50 / p95 / p99 of the last `WINDOW` requests of each route, computed when scraped,
for dashboards without PromQL. Cache hits and misses count features found or not found in the
online store; `featurelake_online_cache_hit_ratio` is their ratio since the server started.
Each server has its own registry, so several apps in one process do not mix their numbers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WINDOW = 2048
QUANTILES = (0.5, 0.95, 0.99)
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted values."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class ServerMetrics:
    """The counters and histograms of one server, rendered as Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "featurelake_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "featurelake_http_errors",
            "Error responses, by route and stable error code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.lookups = Counter(
            "featurelake_online_lookups",
            "Features looked up in the online store, by result (hit: found, miss: not found).",
            ["result"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._hits = 0
        self._misses = 0
        self.registry.register(_DerivedCollector(self))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)
        with self._lock:
            recent = self._recent.get(route)
            if recent is None:
                recent = self._recent[route] = deque(maxlen=WINDOW)
            recent.append(seconds)

    def error(self, route: str, code: str) -> None:
        self.errors.labels(route, code).inc()

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self.lookups.labels("hit").inc(hits)
        if misses:
            self.lookups.labels("miss").inc(misses)
        with self._lock:
            self._hits += hits
            self._misses += misses

    def latency_quantiles(self) -> dict[str, dict[float, float]]:
        """Route -> {0.5: seconds, 0.95: ..., 0.99: ...} over its last WINDOW requests."""
        with self._lock:
            snapshot = {route: sorted(values) for route, values in self._recent.items()}
        return {route: {q: quantile(v, q) for q in QUANTILES} for route, v in snapshot.items()}

    def hit_ratio(self) -> float | None:
        with self._lock:
            total = self._hits + self._misses
            return self._hits / total if total else None

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DerivedCollector:
    """Gauges computed at scrape time: latency quantiles and the cache hit ratio."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily(
            "featurelake_http_request_duration_quantile_seconds",
            f"Latency quantiles of the last {WINDOW} requests of each route.",
            labels=["route", "quantile"],
        )
        for route, quantiles in sorted(self.metrics.latency_quantiles().items()):
            for q, seconds in quantiles.items():
                gauge.add_metric([route, str(q)], seconds)
        yield gauge
        ratio = self.metrics.hit_ratio()
        hit = GaugeMetricFamily(
            "featurelake_online_cache_hit_ratio",
            "Share of looked-up features found in the online store since start (NaN: none yet).",
        )
        hit.add_metric([], float("nan") if ratio is None else ratio)
        yield hit
