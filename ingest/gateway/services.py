"""What protocol handlers need from the outside world, independent of OCPP version:
id tag decisions, transaction ids, registry writes, publishing, metrics.

id tag decisions: the operator's list (``id_tags``) decides Accepted / Blocked /
Expired / Invalid (see ``decide_authorization``); lookups are cached for
``id_tag_cache_ttl_s`` per replica (a change in the list takes at most that long to
apply). A transaction start (1.6 StartTransaction, 2.0.1 TransactionEvent carrying
an idToken) is answered ``ConcurrentTx`` when the same id tag has an open transaction
on another connector or station (``open_transactions``, never cached) and concurrent
transactions are not allowed; that also raises a security alert. Authorize never
answers ConcurrentTx (OCPP 1.6: only relevant for StartTransaction; the driver may be
authorising to stop the running transaction). Open transactions older than
``open_transaction_max_age_s`` are ignored (a lost StopTransaction must not lock a
card out forever), and a new start on a connector replaces what was open there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from bus.envelope import Envelope, Kind, encode_envelope, new_message_id
from bus.producer import Producer, PublishError
from bus.times import format_rfc3339, utc_now
from bus.topics import Topics
from ingest.gateway.remote_start_match import StartSeen, match_v16, pending_start_of
from runtime.metrics import MetricFamily
from store import id_tokens, remote_start_links, stations
from store.id_tokens import IdTagRecord
from store.station_batches import StationWrites

log = structlog.get_logger("chargeflow.gateway")


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Version-neutral idTagInfo."""

    status: str  # Accepted | Blocked | Expired | Invalid | ConcurrentTx
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None


def decide_authorization(record: IdTagRecord | None, now: datetime) -> AuthDecision:
    """The operator's list decides: unknown -> Invalid; blocked/expired as stored;
    an ``expiry_date`` in the past makes an Accepted tag Expired."""
    if record is None:
        return AuthDecision("Invalid")
    if record.status in ("Blocked", "Invalid"):
        return AuthDecision(record.status)
    if record.status == "Expired" or (record.expiry_date is not None and record.expiry_date <= now):
        return AuthDecision("Expired")
    # A group (the parent id tag) that is itself in the list and blocked or expired
    # blocks or expires every member.
    if record.parent_status == "Blocked":
        return AuthDecision("Blocked")
    if record.parent_status == "Expired" or (
        record.parent_expiry_date is not None and record.parent_expiry_date <= now
    ):
        return AuthDecision("Expired")
    return AuthDecision("Accepted", record.expiry_date, record.parent_id_tag)


class GatewayMetrics:
    def __init__(self, registry_: CollectorRegistry) -> None:
        self.registry = registry_
        family = MetricFamily(registry_, "chargeflow_gateway")
        self.calls = family.counter(
            "calls", "CALLs received, by action and outcome", "action", "outcome"
        )
        self.frame_errors = family.counter(
            "frame_errors", "Frames that were not OCPP-J, by error code", "code"
        )
        self.publish_seconds = family.histogram(
            "publish_seconds", "Time until Kafka confirmed an event"
        )
        self.connected = family.gauge("connected_stations", "Stations connected now")
        self.rejected_handshakes = family.counter(
            "rejected_handshakes", "WebSocket upgrades refused, by reason", "reason"
        )
        self.concurrent_tx = family.counter(
            "concurrent_tx", "Transaction starts answered ConcurrentTx"
        )
        self.security_alerts = family.counter(
            "security_alerts", "Security alerts published, by alert", "alert"
        )
        self.throttled = family.counter(
            "throttled_frames", "Frames whose reading was delayed by the per-connection rate limit"
        )
        self.silent_closes = family.counter(
            "silent_closes", "Connections closed because the station stayed silent too long"
        )
        self.keepalive_closes = family.counter(
            "keepalive_closes",
            "Connections closed (1011) because a ping went unanswered while the gateway "
            "was waiting for the station",
        )
        self.stray_answers = family.counter(
            "stray_answers",
            "CALLRESULT/CALLERROR frames answering no CALL the gateway awaits (dropped), by kind",
            "kind",
        )
        self.busy_handshakes = family.counter(
            "busy_handshakes",
            "Upgrades refused with 503 because too many logins waited for verification",
        )
        self.password_checks = family.counter(
            "password_checks",
            "Station passwords checked at login, by method (argon2, or verified_credential: "
            "an HMAC against the station's stored verified credential)",
            "method",
        )
        self.rehashed_passwords = family.counter(
            "rehashed_passwords",
            "Stored password hashes upgraded to the current argon2 parameters at login",
        )


class LastSeen:
    """``stations.last_seen_at``, coalesced: CALLs only note the time in memory and one
    UPDATE per ``interval_s`` writes every station seen since. A failed write is
    retried with the next batch; ``close`` writes what is left."""

    def __init__(self, pool: AsyncConnectionPool, interval_s: float = 1.0) -> None:
        self.pool = pool
        self.interval_s = interval_s
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, charge_point_id: str, at: datetime) -> None:
        previous = self._seen.get(charge_point_id)
        if previous is None or at > previous:
            self._seen[charge_point_id] = at

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-last-seen")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        batch, self._seen = self._seen, {}
        if not batch:
            return
        try:
            await stations.touch_last_seen_many(self.pool, batch)
        except Exception as exc:  # bookkeeping only: keep the times for the next round
            log.warning("could not record last_seen_at", stations=len(batch), error=str(exc))
            for cp_id, at in batch.items():
                self.touch(cp_id, at)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


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
        gateway_id: str = "gateway",
        id_tag_cache_ttl_s: float = 30.0,
        allow_concurrent_transactions: bool = False,
        open_transaction_max_age_s: float = 48 * 3600.0,
        validate_responses: bool = False,
        last_seen_interval_s: float = 1.0,
        remote_start_window_s: float = 180.0,
    ) -> None:
        self.pool = pool
        self.remote_start_window_s = remote_start_window_s
        # Check our own CALLRESULTs against the response schemas (tests turn it on).
        self.validate_responses = validate_responses
        self.last_seen = LastSeen(pool, last_seen_interval_s)
        # Connection rows, boots, statuses and login bookkeeping, batched (group commit).
        self.station_writes = StationWrites(pool)
        self.gateway_id = gateway_id
        self.id_tag_cache_ttl_s = id_tag_cache_ttl_s
        self.allow_concurrent_transactions = allow_concurrent_transactions
        self.open_transaction_max_age_s = open_transaction_max_age_s
        # id tag -> (expires at (monotonic), record or None for "not in the list")
        self._id_tags: dict[str, tuple[float, IdTagRecord | None]] = {}
        self.producer = producer
        self.topics = topics
        self.metrics = metrics
        self.heartbeat_interval_s = heartbeat_interval_s
        self.delivery_timeout_ms = delivery_timeout_ms
        self.data_transfer_vendor_ids = data_transfer_vendor_ids

    def data_transfer_status(self, vendor_id: str) -> str:
        """DataTransfer answer (both versions): Accepted for a configured vendor id,
        else UnknownVendorId. Message ids are the vendor's business, not checked."""
        return "Accepted" if vendor_id in self.data_transfer_vendor_ids else "UnknownVendorId"

    async def _id_tag(self, id_tag: str) -> IdTagRecord | None:
        now = time.monotonic()
        cached = self._id_tags.get(id_tag)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await id_tokens.get_id_tag(self.pool, id_tag)
        if self.id_tag_cache_ttl_s > 0:
            if len(self._id_tags) >= 10_000:
                for key in [k for k, (exp, _) in self._id_tags.items() if exp <= now]:
                    del self._id_tags[key]
                while len(self._id_tags) >= 10_000:
                    del self._id_tags[next(iter(self._id_tags))]
            self._id_tags[id_tag] = (now + self.id_tag_cache_ttl_s, record)
        return record

    async def authorize(self, id_tag: str) -> AuthDecision:
        return decide_authorization(await self._id_tag(id_tag), utc_now())

    async def authorize_start(
        self,
        id_tag: str,
        charge_point_id: str,
        *,
        connector_id: int | None,
        transaction_id: str | None,
    ) -> AuthDecision:
        """The decision for a transaction start: the list, then concurrent use.
        An open transaction on the same station and connector (1.6: a retried
        StartTransaction) or with the same transaction id (2.0.1) is not concurrent."""
        decision = await self.authorize(id_tag)
        if decision.status != "Accepted" or self.allow_concurrent_transactions:
            return decision
        newer_than = utc_now() - timedelta(seconds=self.open_transaction_max_age_s)
        others = [
            tx
            for tx in await id_tokens.open_transactions_for_tag(self.pool, id_tag, newer_than)
            if not (
                tx.charge_point_id == charge_point_id
                and (
                    tx.transaction_id == transaction_id
                    or (connector_id is not None and tx.connector_id == connector_id)
                )
            )
        ]
        if not others:
            return decision
        other = others[0]
        self.metrics.concurrent_tx.inc()
        try:
            await self.publish_alert(
                charge_point_id,
                {
                    "alert": "concurrent_id_tag",
                    "id_tag": id_tag,
                    "connector_id": connector_id,
                    "other_charge_point_id": other.charge_point_id,
                    "other_transaction_id": other.transaction_id,
                    "other_connector_id": other.connector_id,
                    "other_started_at": format_rfc3339(other.started_at),
                    "gateway_id": self.gateway_id,
                },
            )
        except PublishError as exc:  # the answer matters more than the alert
            log.warning("could not publish the concurrent-use alert", error=str(exc))
        return AuthDecision("ConcurrentTx", decision.expiry_date, decision.parent_id_tag)

    async def next_transaction_id(self) -> int:
        return await id_tokens.next_transaction_id(self.pool)

    async def link_start_v16(
        self, charge_point_id: str, start: StartSeen, transaction_id: str
    ) -> uuid.UUID | None:
        """Link a 1.6 StartTransaction to the remote start it belongs to (ADR 0010)."""
        window_s = self.remote_start_window_s
        rows = await remote_start_links.pending_v16(
            self.pool, charge_point_id, start.timestamp, window_s
        )
        pending = (pending_start_of(*row) for row in rows)
        command_id = match_v16(start, (p for p in pending if p is not None), window_s)
        if command_id is None:
            return None
        linked = await remote_start_links.link(
            self.pool, charge_point_id, command_id, transaction_id
        )
        return command_id if linked else None

    async def link_start_v201(
        self, charge_point_id: str, remote_start_id: int, transaction_id: str
    ) -> uuid.UUID | None:
        """Link a 2.0.1 transaction to the RequestStartTransaction of its remoteStartId."""
        return await remote_start_links.link_v201(
            self.pool, charge_point_id, remote_start_id, transaction_id
        )

    async def publish(self, envelope: Envelope, topic: str | None = None) -> None:
        """Return once Kafka stored the event (on ``ocpp.events`` unless ``topic``);
        raise ``PublishError`` otherwise."""
        started = time.perf_counter()
        try:  # the producer fails a publish without a delivery report itself (guard_s)
            await self.producer.publish(
                topic or self.topics.ocpp_events,
                envelope.charge_point_id.encode(),
                encode_envelope(envelope),
            )
        finally:
            self.metrics.publish_seconds.observe(time.perf_counter() - started)

    async def publish_alert(self, charge_point_id: str, payload: dict[str, Any]) -> None:
        """A ``security.alert`` envelope on the alerts topic, keyed by the station."""
        now = utc_now()
        self.metrics.security_alerts.labels(str(payload.get("alert", "other"))).inc()
        await self.publish(
            Envelope(
                message_id=new_message_id(),
                charge_point_id=charge_point_id,
                received_at=now,
                measured_at=now,
                kind=Kind.SECURITY_ALERT,
                payload=payload,
            ),
            self.topics.alerts,
        )
