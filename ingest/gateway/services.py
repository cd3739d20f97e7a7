"""What protocol handlers need from the outside world, independent of OCPP version:
id tag decisions, transaction ids, registry writes, publishing, metrics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg_pool import AsyncConnectionPool

from bus.envelope import Envelope, encode_envelope
from bus.producer import Producer, PublishError
from bus.topics import Topics
from store import registry
from store.registry import IdTagRecord


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Version-neutral idTagInfo."""

    status: str  # Accepted | Blocked | Expired | Invalid
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None


def decide_authorization(record: IdTagRecord | None, now: datetime) -> AuthDecision:
    """The operator's list decides: unknown -> Invalid; blocked/expired as stored;
    an ``expiry_date`` in the past makes an Accepted tag Expired."""
    if record is None:
        return AuthDecision("Invalid")
    if record.status in ("Blocked", "Invalid"):
        return AuthDecision(record.status)
    if record.status == "Expired" or (
        record.expiry_date is not None and record.expiry_date <= now
    ):
        return AuthDecision("Expired")
    return AuthDecision("Accepted", record.expiry_date, record.parent_id_tag)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_datetime(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GatewayMetrics:
    def __init__(self, registry_: CollectorRegistry) -> None:
        self.registry = registry_
        self.calls = Counter(
            "chargeflow_gateway_calls", "CALLs received, by action and outcome",
            ["action", "outcome"], registry=registry_,
        )
        self.frame_errors = Counter(
            "chargeflow_gateway_frame_errors", "Frames that were not OCPP-J, by error code",
            ["code"], registry=registry_,
        )
        self.publish_seconds = Histogram(
            "chargeflow_gateway_publish_seconds", "Time until Kafka confirmed an event",
            registry=registry_,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.connected = Gauge(
            "chargeflow_gateway_connected_stations", "Stations connected now",
            registry=registry_,
        )
        self.rejected_handshakes = Counter(
            "chargeflow_gateway_rejected_handshakes", "WebSocket upgrades refused, by reason",
            ["reason"], registry=registry_,
        )


class GatewayServices:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        producer: Producer,
        topics: Topics,
        metrics: GatewayMetrics,
        heartbeat_interval_s: int,
        delivery_timeout_ms: int,
        data_transfer_vendor_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.heartbeat_interval_s = heartbeat_interval_s
        self._publish_timeout = delivery_timeout_ms / 1000 + 2.0
        self.data_transfer_vendor_ids = data_transfer_vendor_ids

    def data_transfer_status(self, vendor_id: str) -> str:
        """DataTransfer answer (both versions): Accepted for a configured vendor id,
        else UnknownVendorId. Message ids are the vendor's business, not checked."""
        return "Accepted" if vendor_id in self.data_transfer_vendor_ids else "UnknownVendorId"

    async def authorize(self, id_tag: str) -> AuthDecision:
        return decide_authorization(await registry.get_id_tag(self.pool, id_tag), utc_now())

    async def next_transaction_id(self) -> int:
        return await registry.next_transaction_id(self.pool)

    async def publish(self, envelope: Envelope) -> None:
        """Return once Kafka stored the event; raise ``PublishError`` otherwise."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                self.producer.publish(
                    self.topics.ocpp_events, envelope.charge_point_id.encode(),
                    encode_envelope(envelope),
                ),
                self._publish_timeout,
            )
        except TimeoutError as exc:
            raise PublishError("no delivery report within the delivery timeout") from exc
        finally:
            self.metrics.publish_seconds.observe(time.perf_counter() - started)
