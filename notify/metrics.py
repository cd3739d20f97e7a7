"""The webhooks worker's Prometheus metrics, next to the process metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

from runtime.metrics import MetricFamily

# What became of a message read from the alerts topic.
INTAKE_RESULTS = ("queued", "other_kind", "deadlettered")
# What became of one attempt.
OUTCOMES = ("delivered", "retry", "dead")
# 1 ms .. 30 s: a receiver's answer, up to a request timeout.
REQUEST_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            with contextlib.suppress(ValueError):  # the caller's registry has them already
                registry.register(collector)
        family = MetricFamily(registry, "chargeflow_webhooks")
        self.messages = family.counter(
            "alert_messages", "Messages read from the alerts topic, by result", "result"
        )
        for result in INTAKE_RESULTS:
            self.messages.labels(result)
        self.queued = family.counter(
            "deliveries_queued", "Deliveries added (one per matching endpoint and alert version)"
        )
        self.attempts = family.counter(
            "attempts",
            "Delivery attempts, by outcome (retry: failed, tried again later)",
            "outcome",
        )
        for outcome in OUTCOMES:
            self.attempts.labels(outcome)
        self.request_seconds = family.histogram(
            "request_seconds", "Time until a receiver answered", REQUEST_SECONDS_BUCKETS
        )
        self.in_flight = family.gauge("in_flight", "Requests in flight")
