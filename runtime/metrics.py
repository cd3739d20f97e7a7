"""Declaring a process's Prometheus metrics on its registry: one ``MetricFamily`` per
process (its name prefix and registry), one line per metric, and the latency buckets
of "until the broker confirmed" histograms."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 1 ms .. 10 s: a broker confirmation within a linger, up to a delivery timeout.
CONFIRM_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class MetricFamily:
    """``MetricFamily(registry, "chargeflow_gateway").counter("calls", "...", "action")``
    declares ``chargeflow_gateway_calls`` with label ``action`` on ``registry``."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(f"{self.prefix}_{name}", documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(f"{self.prefix}_{name}", documentation, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float] = CONFIRM_SECONDS_BUCKETS
    ) -> Histogram:
        return Histogram(
            f"{self.prefix}_{name}", documentation, registry=self.registry, buckets=buckets
        )
