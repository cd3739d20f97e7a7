"""Reading one topic at least once, for workers that store what they read before they
commit it (the webhooks intake, the billing worker).

Every partition is assigned by hand (no consumer-group join, which stalls for seconds on
every start), from the offsets committed under the group (the beginning of the topic on
the very first start). The worker reads a batch, stores what it means, then commits the
batch's offsets: a crash re-reads at most the last batch, whose rows are already there
(the worker's writes are idempotent), so nothing is lost and nothing counts twice.
librdkafka's consumer is not thread-safe: every call runs on one thread of its own.

:func:`until_stopped` retries an action through database and broker outages with capped
backoff until it passes or the worker is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from tenacity import RetryCallState

from runtime.logs import kafka_logger
from runtime.retry import KAFKA, async_retrying, failure, next_wait

log = structlog.get_logger("chargeflow.bus.reader")

# How long the broker may hold a fetch with nothing to return. Apache Kafka answers a
# fetch as soon as a record arrives; Tansu (local runs) holds it this long regardless,
# so every record waited out librdkafka's default 500 ms there. An idle reader pays one
# small fetch per partition every FETCH_WAIT_MS.
FETCH_WAIT_MS = 20


def next_batch(consumer: Consumer, size: int, timeout_s: float) -> list[Message]:
    """(blocking) The next message as soon as there is one (up to ``timeout_s``), with
    whatever else is already fetched, up to ``size``. ``consume(size, timeout)`` alone
    waits out the timeout while fewer than ``size`` messages are there."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)]


T = TypeVar("T")
ExceptionTypes = tuple[type[BaseException], ...]


class TopicReader:
    def __init__(
        self, bootstrap: str, topic: str, group: str, *, batch: int = 500, poll_s: float = 0.5
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.batch = batch
        self.poll_s = poll_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"reader-{topic}")
        self._consumer: Consumer | None = None

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def assign(self) -> dict[int, int | str]:
        """Every partition at its committed offset, else the beginning (partition ->
        offset or "beginning"); RuntimeError while the topic cannot be listed."""
        return await self._in_thread(self._assign)

    async def read(self) -> list[Message]:
        """The next batch (empty after ``poll_s`` without messages); consumer errors are
        logged, not returned."""
        return await self._in_thread(self._consume)

    async def commit(self, messages: list[Message]) -> None:
        """Commit the offsets after ``messages`` (synchronously: once this returns, a
        restart reads on after them)."""
        await self._in_thread(lambda: self._commit(messages))

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True)
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await asyncio.to_thread(consumer.close)

    def _assign(self) -> dict[int, int | str]:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": self.group,  # offsets only, never joined
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "fetch.wait.max.ms": FETCH_WAIT_MS,
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
        for msg in next_batch(self._consumer, self.batch, self.poll_s):
            err = msg.error()
            if err is None:
                out.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", topic=self.topic, error=err.str())
        return out

    def _commit(self, messages: list[Message]) -> None:
        assert self._consumer is not None
        ends: dict[int, int] = {}
        for msg in messages:
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        if ends:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in sorted(ends.items())],
                asynchronous=False,
            )


async def until_stopped(
    action: Callable[[], Awaitable[Any]],
    what: str,
    stop: asyncio.Event,
    outages: ExceptionTypes,
) -> bool:
    """Run ``action`` until it passes, retrying ``outages`` (and RuntimeError: a topic not
    there yet) with capped backoff; False if a stop came first (the waits end at a stop)."""

    def failed(state: RetryCallState) -> None:
        log.warning(
            f"{what} failed, retrying", error=str(failure(state)), delay=round(next_wait(state), 2)
        )

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # wait_for may swallow a cancel (3.11)
                await stop.wait()

    retried: ExceptionTypes = (*outages, RuntimeError)
    try:
        async for attempt in async_retrying(
            KAFKA.capped(30.0, initial_s=0.5),
            retried,
            before_sleep=failed,
            sleep=sleep,
            stop_when=stop.is_set,
        ):
            with attempt:
                await action()
    except retried:
        if stop.is_set():
            return False
        raise
    return True
