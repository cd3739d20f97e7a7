"""Remote commands: ``ocpp.commands`` -> the station's socket -> ``ocpp.command-results``.

Every gateway replica runs one :class:`CommandRouter` (owned by ``server.Gateway``,
started and cancelled with it). It reads **all** partitions of ``ocpp.commands``
with manual assignment (no consumer group), from the position it keeps in
``gateway_offsets`` (the topic's end on its first start), and routes each command
as ``docs/commands.md`` describes:

- past ``expires_at`` -> claim it as ``expired`` (never sent);
- the station is connected to this replica -> check it (action of the station's
  version, payload against that version's schema; else ``failed``, not sent),
  claim it as ``sent``, send it, wait up to ``timeout_s`` for the answer;
- the station is connected to another live replica -> ignore it (that one sends it);
- nobody live holds the station -> claim it as ``offline`` (fail fast).

Claims are conditional row updates (``store.commands``), so exactly one replica acts
on a command. Answers map to: CALLRESULT with an accepting status (Accepted,
Unlocked, Scheduled, RebootRequired, AcceptedCanceled; Get/SetVariables and
GetConfiguration: every item accepted / no unknown key; answers without a status
field) -> ``accepted``; any other status -> ``rejected``; CALLERROR -> ``failed``
(code/description kept); an answer that violates the response schema -> ``failed``;
no answer in time -> ``timed_out``; connection lost or gateway stopping while
waiting -> ``failed``. The terminal row is published as a ``CommandResult``.

A send runs in its own task and waits for its answer, which the connection's receive
loop hands over (``CentralSystemBase.expect_answer``: only the awaited message id is
kept, stray answers are dropped and counted); the loop never waits for a
command, so a station's own CALLs are handled while a command is in flight (the
library's ``call`` from inside a handler would deadlock). One command at a time per
station (OCPP-J allows one outstanding CALL per direction), in the order read.

Each replica heartbeats into ``gateways``; every heartbeat it also expires
``pending`` commands nobody sent in time, fails ``sent`` commands whose replica
died before recording the answer, and publishes the results of terminal rows that
were never marked published (``store.commands.publish_unpublished``).

Here: reading and routing. What may be sent and what an answer means is
``command_checks``; one CALL and its answer ``station_calls``; claims, terminal rows
and published results ``command_outbox``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool
from tenacity import RetryCallState

from bus.commands import Command, CommandError, CommandStatus, decode_command
from bus.producer import Producer, PublishError
from bus.reader import FETCH_WAIT_MS, next_batch
from bus.times import utc_now
from bus.topics import Topics
from ingest.gateway.command_checks import SCHEMAS
from ingest.gateway.command_dispatch import CommandDispatch
from ingest.gateway.command_outbox import OUTAGES, CommandMetrics, CommandOutbox
from ingest.gateway.protocol import CentralSystemBase
from runtime.logs import kafka_logger
from runtime.retry import KAFKA, async_retrying, failure, next_wait
from runtime.tasks import cancel_and_wait
from store import commands as store

log = structlog.get_logger("chargeflow.gateway.commands")


class CommandRouter:
    """Reads ``ocpp.commands``, sends what belongs to this replica, records outcomes."""

    def __init__(
        self,
        *,
        gateway_id: str,
        bootstrap: str,
        topics: Topics,
        pool: AsyncConnectionPool,
        producer: Producer,
        lookup: Callable[[str], CentralSystemBase | None],
        registry: CollectorRegistry,
        heartbeat_s: float = 5.0,
        grace_s: float = 20.0,
        poll_s: float = 0.2,
        publish_timeout_s: float = 10.0,
        assign_timeout_s: float = 10.0,
        stop_wait_s: float = 5.0,
    ) -> None:
        self.gateway_id = gateway_id
        self.topics = topics
        self.pool = pool
        self.producer = producer
        self.lookup = lookup
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.publish_timeout_s = publish_timeout_s
        self.assign_timeout_s = assign_timeout_s
        self.stop_wait_s = stop_wait_s
        self.metrics = CommandMetrics(registry)
        self.outbox = CommandOutbox(
            gateway_id=gateway_id,
            topics=topics,
            pool=pool,
            producer=producer,
            metrics=self.metrics,
            publish_timeout_s=publish_timeout_s,
        )
        self._bootstrap = bootstrap
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="commands-consumer")
        self._consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.log = log.bind(gateway_id=gateway_id)
        self.dispatch = CommandDispatch(self.outbox, self.log)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Heartbeat, fix the read position of every partition, start the loops.

        Kafka unreachable or the topic missing at start does not stop the gateway
        from serving stations: the assignment is retried in the background."""
        for schemas in SCHEMAS.values():
            await asyncio.to_thread(schemas.warm)
        await store.heartbeat(self.pool, self.gateway_id)
        positions: dict[int, int] | None = None
        try:
            positions = await self._assign_now(self.assign_timeout_s)
        except RuntimeError as exc:
            self.log.warning(
                "commands topic not readable yet, retrying in the background", error=str(exc)
            )
        self._tasks = [
            asyncio.create_task(self._consume_loop(positions), name="commands-consume"),
            asyncio.create_task(self._heartbeat_loop(), name="commands-heartbeat"),
        ]
        self.log.info(
            "command router started", topic=self.topics.ocpp_commands, positions=positions
        )

    async def _assign_now(self, timeout_s: float) -> dict[int, int]:
        topic = self.topics.ocpp_commands
        stored = await store.load_offsets(self.pool, self.gateway_id, topic)
        loop = asyncio.get_running_loop()
        positions = await loop.run_in_executor(
            self._executor, functools.partial(self._assign, stored, timeout_s)
        )
        await store.save_offsets(self.pool, self.gateway_id, topic, positions)
        return positions

    def _assign(self, stored: dict[int, int], timeout_s: float) -> dict[int, int]:
        """(executor thread) Assign every partition at its stored position, or at its
        current end; returns the explicit positions (no lazy OFFSET_END)."""
        topic = self.topics.ocpp_commands
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"chargeflow-gateway-{self.gateway_id}",  # never joined
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": FETCH_WAIT_MS,
                "log_level": 3,
                "logger": kafka_logger(),
            }
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                meta = consumer.list_topics(topic, timeout=max(0.5, min(5.0, timeout_s)))
                info = meta.topics.get(topic)
            except KafkaException:
                info = None
            if info is not None and info.error is None and info.partitions:
                break
            if time.monotonic() > deadline:
                consumer.close()
                raise RuntimeError(f"topic {topic} not available (broker down or topic missing)")
            time.sleep(0.5)
        positions: dict[int, int] = {}
        for partition in sorted(info.partitions):
            if partition in stored:
                positions[partition] = stored[partition]
            else:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                positions[partition] = int(high)
        consumer.assign([TopicPartition(topic, p, o) for p, o in positions.items()])
        self._consumer = consumer
        return positions

    async def stop(self) -> None:
        """Stop reading and heartbeating; in-flight sends are failed (their answer can
        no longer be recorded) and the replica is forgotten (it holds nothing)."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.dispatch.cancel_all()
        if await self._consumer_thread_idle():
            if self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                await asyncio.to_thread(consumer.close)
        else:  # a Kafka call that never returns must not hold the shutdown
            self.log.warning(
                "the commands consumer did not return in time; stopping without closing it",
                wait_s=self.stop_wait_s,
            )
            self._consumer = None
        self._executor.shutdown(wait=False)
        try:
            await store.forget_gateway(self.pool, self.gateway_id)
        except psycopg.Error as exc:
            self.log.warning("could not unregister the replica", error=str(exc))
        self.log.info("command router stopped")

    async def _consumer_thread_idle(self) -> bool:
        """Whether the consumer thread finished its current poll/assignment within
        ``stop_wait_s`` (then nothing uses the consumer any more)."""
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, lambda: None)  # queued after it
        try:
            await asyncio.wait_for(done, self.stop_wait_s)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ station hooks

    def station_disconnected(self, station: CentralSystemBase) -> None:
        """A connection ended: commands waiting for its answer fail, queued ones are
        not sent (offline)."""
        self.dispatch.station_disconnected(station)

    # --------------------------------------------------------------------- loops

    async def _consume_loop(self, positions: dict[int, int] | None) -> None:
        loop = asyncio.get_running_loop()
        topic = self.topics.ocpp_commands
        if positions is None:

            def not_yet(state: RetryCallState) -> None:
                self.log.warning(
                    "commands topic still not readable",
                    error=str(failure(state)),
                    delay=round(next_wait(state), 2),
                )

            async for attempt in async_retrying(
                KAFKA.capped(30.0, initial_s=1.0),
                (RuntimeError, psycopg.Error),
                before_sleep=not_yet,
            ):
                with attempt:
                    positions = await self._assign_now(10.0)
        assert positions is not None
        self.log.info("reading commands", topic=topic, positions=positions)
        committed = dict(positions)
        while True:
            consumer = self._consumer
            assert consumer is not None
            messages = await loop.run_in_executor(
                self._executor, functools.partial(next_batch, consumer, 200, self.poll_s)
            )
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        self.log.warning("consumer error", error=err.str())
                    continue
                try:
                    await self._retrying(functools.partial(self._handle, msg), "handle command")
                except Exception:  # a bug must not stop the command stream
                    self.log.exception(
                        "command not handled, skipped",
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )
                positions[int(msg.partition() or 0)] = int(msg.offset() or 0) + 1
            if positions != committed:
                snapshot = dict(positions)
                await self._retrying(
                    functools.partial(
                        store.save_offsets, self.pool, self.gateway_id, topic, snapshot
                    ),
                    "save offsets",
                )
                committed = snapshot

    async def _retrying(self, action: Callable[[], Any], what: str) -> None:
        """Run ``action`` until the database/Kafka let it through (outages pass)."""

        def failed(state: RetryCallState) -> None:
            self.log.warning(
                f"{what} failed, retrying",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async for attempt in async_retrying(KAFKA, OUTAGES, before_sleep=failed):
            with attempt:
                await action()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await store.heartbeat(self.pool, self.gateway_id)
                await self.outbox.settle_overdue(self.grace_s, self.heartbeat_s)
            except (psycopg.Error, PublishError, OSError) as exc:
                self.log.warning("heartbeat failed", error=str(exc))

    # ------------------------------------------------------------------- routing

    async def _handle(self, msg: Message) -> None:
        try:
            command = decode_command(msg.value())
        except CommandError as exc:
            await self.outbox.deadletter(msg, str(exc))
            return
        await store.insert_if_missing(self.pool, command)
        await self.route(command)

    async def route(self, command: Command) -> None:
        """Decide what this replica does with ``command`` (docs/commands.md)."""
        cp_id = command.charge_point_id
        if command.expires_at <= utc_now():
            await self.outbox.decide(
                command,
                CommandStatus.EXPIRED,
                f"expired at {command.expires_at.isoformat()} before it was sent",
            )
            return
        station = self.lookup(cp_id)
        if station is not None:
            self.dispatch.spawn(command, station)
            return
        holder = await store.live_holder(self.pool, cp_id, self.grace_s)
        if holder is not None and holder != self.gateway_id:
            self.metrics.ignored.inc()
            return  # the replica holding the station sends it
        await self.outbox.decide(
            command, CommandStatus.OFFLINE, f"station {cp_id} is not connected to any gateway"
        )
