"""Prometheus metrics of one API app: HTTP requests and the database pool.

Each app has its own registry (tests run several apps in one process). Requests are
labelled by route template (``/v1/sessions/{session_id}``), never by raw path, so ids,
typos and probes cannot grow the label set; unmatched paths share one label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# psycopg_pool get_stats() keys: (metric suffix, help); measures are gauges, the rest
# are counters since the pool opened (absent until the first event).
_POOL_GAUGES = {
    "pool_size": ("connections", "Connections the pool holds (in use or idle)"),
    "pool_available": ("available", "Idle connections ready to use"),
    "pool_max": ("max", "Configured maximum pool size"),
    "requests_waiting": ("waiting", "Requests waiting for a connection"),
}
_POOL_COUNTERS = {
    "requests_num": ("requests", "Connection requests"),
    "requests_queued": ("requests_queued", "Connection requests that had to wait"),
    "requests_errors": ("request_errors", "Connection requests that failed (e.g. timeout)"),
    "connections_num": ("connection_attempts", "Connection attempts to the database"),
    "connections_errors": ("connection_errors", "Failed connection attempts"),
    "connections_lost": ("connections_lost", "Connections found broken"),
}


class PoolCollector(Collector):
    """Reads the pool's statistics at scrape time."""

    def __init__(self, pool: Callable[[], AsyncConnectionPool[Any] | None]) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Any]:
        pool = self._pool()
        if pool is None:
            return
        stats = pool.get_stats()
        for key, (name, help_text) in _POOL_GAUGES.items():
            family = GaugeMetricFamily(f"chargeflow_api_db_pool_{name}", help_text)
            family.add_metric([], float(stats.get(key, 0)))
            yield family
        for key, (name, help_text) in _POOL_COUNTERS.items():
            counter = CounterMetricFamily(f"chargeflow_api_db_pool_{name}", help_text)
            counter.add_metric([], float(stats.get(key, 0)))
            yield counter


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chargeflow_api_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chargeflow_api_request_duration_seconds",
            "Time to answer a request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "chargeflow_api_requests_in_progress",
            "Requests being answered",
            ["method"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "chargeflow_api_auth_failures",
            "Requests answered 401 or 429 (rate limited)",
            ["status"],
            registry=self.registry,
        )
        self.unhandled = Counter(
            "chargeflow_api_unhandled_exceptions",
            "Requests that raised an unexpected exception (answered 500)",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "chargeflow_api_audit_failures",
            "Writes whose audit row could not be stored (answered all the same)",
            registry=self.registry,
        )

    def watch_pool(self, pool: Callable[[], AsyncConnectionPool[Any] | None]) -> None:
        self.registry.register(PoolCollector(pool))
