"""``alerts`` topic -> ``webhook_deliveries`` rows, before the read position is committed.

The alerts topic is read at least once by :class:`bus.reader.TopicReader` (every
partition assigned by hand from the group's committed offsets). Per batch read: each
``fault.alert`` version becomes one row per endpoint that wants it
(:func:`notify.policy.endpoints_for`), all inserted in one statement; other kinds on the
topic (the gateway's ``security.alert`` envelopes) are passed over; a message that says
it is a fault alert but cannot be read goes to the dead-letter topic with the reason.
Only then are the batch's offsets committed: a crash re-reads at most the last batch,
and its rows are already there (unique per endpoint and version), so nothing is lost
and nothing is queued twice. Several workers may run: each reads every partition, the
second copy of a row inserts nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import msgspec
import psycopg
import structlog
from confluent_kafka import (
    KafkaException,
    Message,
)
from psycopg_pool import AsyncConnectionPool

from bus.deadletter import dead_letter_headers
from bus.producer import Producer, PublishError
from bus.reader import TopicReader, until_stopped
from notify.config import WebhooksConfig
from notify.metrics import WebhookMetrics
from notify.policy import AlertMessageError, endpoints_for, read_alert_message
from store.alerts import version_key
from store.webhooks import NewDelivery, insert_deliveries

log = structlog.get_logger("chargeflow.webhooks.intake")

STAGE = "webhooks.intake"
BATCH = 500
OUTAGES = (psycopg.OperationalError, PublishError, KafkaException)


class AlertIntake:
    def __init__(
        self,
        config: WebhooksConfig,
        pool: AsyncConnectionPool,
        producer: Producer,
        metrics: WebhookMetrics,
        on_queued: Callable[[], None] = lambda: None,
        poll_s: float = 0.5,
    ) -> None:
        self.config = config
        self.topic = config.topics.alerts
        self.pool = pool
        self.producer = producer
        self.metrics = metrics
        self.on_queued = on_queued
        self.reader = TopicReader(
            config.kafka_bootstrap, self.topic, config.consumer_group, batch=BATCH, poll_s=poll_s
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set (or cancelled); the consumer is closed on the way out.
        A batch not stored when the stop came is not committed: it is read again."""
        try:
            if not await until_stopped(self._assign_now, "reading the alerts topic", stop, OUTAGES):
                return
            while not stop.is_set():
                messages = await self.reader.read()
                if messages:
                    batch = functools.partial(self.handle_batch, messages)
                    if not await until_stopped(batch, "queueing alerts", stop, OUTAGES):
                        return
        finally:
            await self.reader.close()

    async def _assign_now(self) -> None:
        positions = await self.reader.assign()
        log.info("reading alerts", topic=self.topic, positions=positions)

    # ----------------------------------------------------------------- a batch

    async def handle_batch(self, messages: list[Message]) -> None:
        """Queue the batch's deliveries, dead-letter what cannot be read, then commit."""
        rows: list[NewDelivery] = []
        for msg in messages:
            try:
                alert = read_alert_message(msg.value())
            except AlertMessageError as exc:
                await self._deadletter(msg, str(exc))
                continue
            if alert is None:
                self.metrics.messages.labels("other_kind").inc()
                continue
            self.metrics.messages.labels("queued").inc()
            payload = msgspec.to_builtins(alert)
            key = version_key(alert)
            rows += [
                NewDelivery(e.name, alert.alert_id, key, payload)
                for e in endpoints_for(alert, self.config.endpoints)
            ]
        new = await insert_deliveries(self.pool, rows)
        await self.reader.commit(messages)
        if new:
            self.metrics.queued.inc(new)
            log.info("deliveries queued", count=new, read=len(messages))
            self.on_queued()

    async def _deadletter(self, msg: Message, reason: str) -> None:
        partition, offset = msg.partition(), msg.offset()
        log.warning(
            "unreadable alert message dead-lettered",
            reason=reason[:300],
            partition=partition,
            offset=offset,
        )
        headers = dead_letter_headers(
            reason, STAGE, topic=self.topic, partition=partition, offset=offset
        )
        await self.producer.publish(
            self.config.topics.deadletter, msg.key(), msg.value() or b"", headers
        )
        self.metrics.messages.labels("deadlettered").inc()
