"""The meter bridge's Prometheus metrics, next to the process metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

from ingest.meters.reading import REASONS
from runtime.metrics import MetricFamily


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Process metrics (CPU, memory, open fds, GC) next to the bridge's own.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            with contextlib.suppress(ValueError):  # the caller's registry has them already
                registry.register(collector)
        family = MetricFamily(registry, "chargeflow_meters")
        self.accepted = family.counter("readings_accepted", "Readings published to meter.readings")
        self.rejected = family.counter(
            "readings_rejected", "Readings dead-lettered, by reason", "reason"
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        self.publish_seconds = family.histogram(
            "publish_seconds", "Time until Kafka confirmed a reading"
        )
        self.publish_retries = family.counter(
            "publish_retries", "Kafka publishes retried (not confirmed)"
        )
        self.registry_errors = family.counter(
            "registry_errors", "Registry lookups that failed (retried)"
        )
        self.connected = family.gauge("mqtt_connected", "1 while subscribed to the MQTT broker")
        self.reconnects = family.counter(
            "mqtt_connection_failures", "MQTT connections that failed or were lost"
        )
        self.in_flight = family.gauge("in_flight", "Readings received and not yet acknowledged")
