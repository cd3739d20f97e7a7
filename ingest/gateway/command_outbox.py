"""Where a command's outcome goes: claims of the ``commands`` row (``store.commands``,
conditional, so exactly one replica decides a command), then the row's result on
``ocpp.command-results`` (the row is the outbox: a result not marked published is
published again by a heartbeat), and dead letters for undecodable commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from bus.commands import Command, CommandStatus, encode_command, encode_result
from bus.deadletter import dead_letter_headers
from bus.producer import Producer, PublishError
from bus.topics import Topics
from runtime.metrics import MetricFamily
from runtime.retry import KAFKA, async_retrying
from store import command_queue
from store import commands as store

log = structlog.get_logger("chargeflow.gateway.commands")
# What the database and Kafka raise while they are away (an outage passes, with retries).
OUTAGES = (psycopg.Error, PublishError, OSError, TimeoutError)


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        family = MetricFamily(registry, "chargeflow_gateway")
        self.results = family.counter(
            "command_results", "Commands this replica decided, by status", "action", "status"
        )
        self.ignored = family.counter(
            "commands_ignored", "Commands left to the replica holding the station"
        )


class CommandOutbox:
    """Claims, terminal writes and result publishing of this replica's commands."""

    def __init__(
        self,
        *,
        gateway_id: str,
        topics: Topics,
        pool: Any,
        producer: Producer,
        metrics: CommandMetrics,
        publish_timeout_s: float,
    ) -> None:
        self.gateway_id = gateway_id
        self.topics = topics
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.publish_timeout_s = publish_timeout_s
        self.log = log.bind(gateway_id=gateway_id)

    async def claim_sent(self, command: Command, ocpp_version: str) -> store.CommandRecord | None:
        """Claim a pending command as ``sent`` (None: decided elsewhere)."""
        return await store.claim(
            self.pool,
            command.command_id,
            self.gateway_id,
            CommandStatus.SENT,
            ocpp_version=ocpp_version,
        )

    async def decide(
        self,
        command: Command,
        status: CommandStatus,
        error: str | None,
        ocpp_version: str | None = None,
    ) -> None:
        """Claim a pending command straight into a terminal status (never sent)."""
        record = await store.claim(
            self.pool,
            command.command_id,
            self.gateway_id,
            status,
            error=error,
            ocpp_version=ocpp_version,
        )
        if record is not None:
            self._log_decided("command not sent", command, status, reason=error)
            await self.publish(record)

    async def complete(
        self,
        command: Command,
        status: CommandStatus,
        *,
        response: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record the terminal status of a sent command."""
        record = await persist(
            lambda: store.complete(
                self.pool, command.command_id, status, response=response, error=error
            )
        )
        if record is not None:
            self._log_decided("command done", command, status, error=error)
            await self.publish(record)

    def _log_decided(
        self, message: str, command: Command, status: CommandStatus, **why: str | None
    ) -> None:
        self.log.info(
            message,
            command_id=str(command.command_id),
            charge_point_id=command.charge_point_id,
            action=command.action,
            status=str(status),
            **why,
        )

    async def publish(self, record: store.CommandRecord) -> None:
        """Publish a terminal row's result, then mark the row (the row is the outbox:
        if this fails for good, a heartbeat publishes it later)."""
        self.metrics.results.labels(record.action, str(record.status)).inc()
        await persist(lambda: self.publish_result(record))
        await persist(lambda: store.mark_published(self.pool, record.command_id))

    async def publish_result(self, record: store.CommandRecord) -> None:
        await asyncio.wait_for(
            self.producer.publish(
                self.topics.ocpp_command_results,
                record.charge_point_id.encode(),
                encode_result(record.to_result()),
            ),
            self.publish_timeout_s,
        )

    async def publish_command(self, command: Command) -> None:
        await asyncio.wait_for(
            self.producer.publish(
                self.topics.ocpp_commands, command.charge_point_id.encode(), encode_command(command)
            ),
            self.publish_timeout_s,
        )

    async def settle_overdue(self, grace_s: float, queued_after_s: float) -> None:
        """Expire ``pending`` commands nobody sent in time, fail ``sent`` ones whose
        replica died, publish terminal rows never marked published and commands the API
        queued while the broker did not take them (older than ``queued_after_s``)."""
        for record in await store.expire_overdue(self.pool, self.gateway_id):
            await self.publish(record)
        for record in await store.abandon_orphaned(self.pool, grace_s):
            await self.publish(record)
        republished = await store.publish_unpublished(self.pool, self.publish_result, grace_s)
        if republished:
            self.log.warning("published results left unpublished", commands=len(republished))
        queued = await command_queue.publish_queued(self.pool, self.publish_command, queued_after_s)
        if queued:
            self.log.warning("published commands the API left unpublished", commands=len(queued))

    async def deadletter(self, msg: Message, reason: str) -> None:
        topic, partition, offset = (
            msg.topic() or "",
            int(msg.partition() or 0),
            int(msg.offset() or 0),
        )
        if not await store.claim_deadletter(
            self.pool, topic, partition, offset, self.gateway_id, reason
        ):
            return  # another replica dead-lettered it
        self.log.warning(
            "undecodable command, dead-lettered", reason=reason, partition=partition, offset=offset
        )
        headers = dead_letter_headers(
            reason, "gateway.commands", topic=topic, partition=partition, offset=offset
        )
        await asyncio.wait_for(
            self.producer.publish(self.topics.deadletter, msg.key(), msg.value() or b"", headers),
            self.publish_timeout_s,
        )


async def persist(action: Callable[[], Any], attempts: int = 5) -> Any:
    """A few retries for the terminal write/publish of a command (short outages)."""
    try:
        async for attempt in async_retrying(KAFKA, OUTAGES, attempts=attempts):
            with attempt:
                return await action()
    except OUTAGES as exc:
        log.error("could not record a command outcome", error=str(exc))
    return None
