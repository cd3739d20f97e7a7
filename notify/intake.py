"""``alerts`` topic -> ``webhook_deliveries`` rows, before the read position is committed.

Every partition of the alerts topic is assigned by hand (no consumer-group join, which
stalls for seconds on every start), from the offsets committed under the configured
group (the beginning of the topic on the very first start). Per batch read: each
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
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import psycopg
import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from psycopg_pool import AsyncConnectionPool
from tenacity import RetryCallState

from bus.deadletter import dead_letter_headers
from bus.producer import Producer, PublishError
from notify.config import WebhooksConfig
from notify.metrics import WebhookMetrics
from notify.policy import AlertMessageError, endpoints_for, read_alert_message
from runtime.logs import kafka_logger
from runtime.retry import KAFKA, async_retrying, failure, next_wait
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
        self.poll_s = poll_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="webhooks-consumer")
        self._consumer: Consumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set (or cancelled); the consumer is closed on the way out.
        A batch not stored when the stop came is not committed: it is read again."""
        try:
            if not await self._retrying(self._assign_now, "reading the alerts topic", stop):
                return
            while not stop.is_set():
                messages = await self._in_thread(self._consume)
                if messages:
                    batch = functools.partial(self.handle_batch, messages)
                    if not await self._retrying(batch, "queueing alerts", stop):
                        return
        finally:
            await asyncio.to_thread(self._executor.shutdown, True)
            if self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                await asyncio.to_thread(consumer.close)

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _retrying(self, action: Callable[[], Any], what: str, stop: asyncio.Event) -> bool:
        """Run ``action`` until the database and Kafka let it through (outages pass);
        False if a stop came first (the waits between tries end at a stop)."""

        def failed(state: RetryCallState) -> None:
            log.warning(
                f"{what} failed, retrying",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async def sleep(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):  # wait_for may swallow a cancel (3.11)
                    await stop.wait()

        try:
            async for attempt in async_retrying(
                KAFKA.capped(30.0, initial_s=0.5),
                (*OUTAGES, RuntimeError),
                before_sleep=failed,
                sleep=sleep,
                stop_when=stop.is_set,
            ):
                with attempt:
                    await action()
        except (*OUTAGES, RuntimeError):
            if stop.is_set():
                return False
            raise
        return True

    # ------------------------------------------------------------------ Kafka

    async def _assign_now(self) -> None:
        positions = await self._in_thread(self._assign)
        log.info("reading alerts", topic=self.topic, positions=positions)

    def _assign(self) -> dict[int, int | str]:
        """(consumer thread) Every partition at its committed offset, else the beginning."""
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.config.kafka_bootstrap,
                    "group.id": self.config.consumer_group,  # offsets only, never joined
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "log_level": 3,
                    "logger": kafka_logger(),
                }
            )
        consumer = self._consumer
        meta = consumer.list_topics(self.topic, timeout=5.0)
        info = meta.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            raise RuntimeError(f"topic {self.topic} not available (broker down or topic missing)")
        wanted = [TopicPartition(self.topic, p) for p in sorted(info.partitions)]
        committed = consumer.committed(wanted, timeout=10.0)
        assignment = [
            TopicPartition(
                self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            )
            for tp in committed
        ]
        consumer.assign(assignment)
        return {tp.partition: tp.offset if tp.offset >= 0 else "beginning" for tp in assignment}

    def _consume(self) -> list[Message]:
        assert self._consumer is not None
        out = []
        for msg in self._consumer.consume(BATCH, self.poll_s):
            err = msg.error()
            if err is None:
                out.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", error=err.str())
        return out

    def _commit(self, messages: list[Message]) -> None:
        assert self._consumer is not None
        ends: dict[int, int] = {}
        for msg in messages:
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        self._consumer.commit(
            offsets=[TopicPartition(self.topic, p, o) for p, o in sorted(ends.items())],
            asynchronous=False,
        )

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
        await self._in_thread(functools.partial(self._commit, messages))
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
