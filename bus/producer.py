"""A Kafka producer whose ``publish`` returns only once the broker confirmed delivery.

librdkafka runs its own network threads; a small polling thread serves the
delivery callbacks. The gateway answers a charge point only after ``publish``
returned, so a CALL is acknowledged only when its event is durably in Kafka.

Every publish waits for one confirmation, so at thousands of messages per second
the per-message overhead shows. Hence:

- delivery reports are collected by the poll thread and handed to the event loop in
  batches: one wake-up (``call_soon_threadsafe``) per batch of reports, however many
  messages it confirms;
- the guard against a report that never comes (librdkafka's ``message.timeout.ms``
  normally fails the message itself) is one sweeper task that fails publishes older
  than ``guard_s`` with ``PublishError``, not a timer per publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as _RdProducer

from runtime.logs import with_kafka_logger


class PublishError(RuntimeError):
    """The broker did not confirm a message (unreachable, timed out, rejected)."""


def producer_config(
    bootstrap: str, *, delivery_timeout_ms: int = 5000, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # Bounded: a charge point waits for our answer, so a dead broker must turn
        # into a CALLERROR well inside the station's own call timeout.
        "message.timeout.ms": delivery_timeout_ms,
        "socket.connection.setup.timeout.ms": max(1000, min(delivery_timeout_ms, 3000)),
        "reconnect.backoff.max.ms": 1000,
        "linger.ms": 2,
        "compression.type": "none",
    }
    if extra:
        config.update(extra)
    return config


Future = asyncio.Future[tuple[int, int]]
Report = tuple[Future, KafkaError | None, Message]


class Producer:
    """Thread-safe producer with awaitable and blocking delivery confirmation.

    ``guard_s``: a publish without a delivery report after this long fails with
    ``PublishError`` (default: ``message.timeout.ms`` + 2 s)."""

    def __init__(self, config: Mapping[str, Any], *, guard_s: float | None = None) -> None:
        if guard_s is None:
            guard_s = float(config.get("message.timeout.ms", 300_000)) / 1000 + 2.0
        self.guard_s = guard_s
        self._reports: deque[Report] = deque()
        self._wake_lock = threading.Lock()
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # (deadline, future) in publish order (the same guard for all: sorted)
        self._inflight: deque[tuple[float, Future]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        # librdkafka's own lines go through the process's logging (served by the poll loop).
        self._producer = _RdProducer(with_kafka_logger(config))
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def start(self) -> None:
        """Bind to the running event loop and start the guard (else at first publish)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._sweeper = loop.create_task(self._sweep(), name="producer-guard")

    async def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Send one message; return (partition, offset) once the broker stored it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use (or a new loop): bind and start sweeping
            self.start()
        future: Future = loop.create_future()
        reports, lock = self._reports, self._wake_lock

        def on_delivery(err: KafkaError | None, msg: Message) -> None:  # poll thread
            reports.append((future, err, msg))
            with lock:
                if self._wake_scheduled:
                    return
                self._wake_scheduled = True
            loop.call_soon_threadsafe(self._settle_reports)

        self._produce(topic, key, value, headers, on_delivery)
        self._inflight.append((time.monotonic() + self.guard_s, future))
        return await future

    def _settle_reports(self) -> None:  # event loop
        with self._wake_lock:
            self._wake_scheduled = False
        reports = self._reports
        while reports:
            future, err, msg = reports.popleft()
            if future.done():
                continue
            if err is not None:
                future.set_exception(PublishError(f"delivery to {msg.topic()} failed: {err.str()}"))
            else:
                future.set_result((msg.partition() or 0, msg.offset() or 0))

    async def _sweep(self) -> None:
        inflight = self._inflight
        while True:
            await asyncio.sleep(min(1.0, self.guard_s / 4))
            now = time.monotonic()
            while inflight and (inflight[0][1].done() or inflight[0][0] <= now):
                _, future = inflight.popleft()
                if not future.done():
                    future.set_exception(
                        PublishError(f"no delivery report within {self.guard_s:g} s")
                    )

    def publish_sync(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, int]:
        done = threading.Event()
        result: list[tuple[int, int] | BaseException] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                result.append(PublishError(f"delivery to {topic} failed: {err.str()}"))
            else:
                result.append((msg.partition() or 0, msg.offset() or 0))
            done.set()

        self._produce(topic, key, value, headers, on_delivery)
        if not done.wait(timeout):
            raise PublishError(f"no delivery report from {topic} within {timeout}s")
        outcome = result[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        while True:
            try:
                if headers:
                    self._producer.produce(
                        topic, value, key, headers=list(headers), on_delivery=on_delivery
                    )
                else:
                    self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                # Local queue full: wait for in-flight deliveries (backpressure).
                self._producer.flush(0.1)
            except KafkaException as exc:
                raise PublishError(f"cannot produce to {topic}: {exc}") from exc

    def flush(self, timeout: float = 10.0) -> int:
        return int(self._producer.flush(timeout))

    def unwritable_reason(self, topic: str, timeout: float) -> str | None:
        """(blocking) None when a broker answered this producer's metadata request for
        ``topic`` within ``timeout`` and every partition has a leader; else why not."""
        try:
            metadata = self._producer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            return f"no metadata: {error.name() if isinstance(error, KafkaError) else exc}"
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return f"topic {topic}: {found.error.name() if found and found.error else 'unknown'}"
        if not found.partitions or any(
            p.leader < 0 or p.error is not None for p in found.partitions.values()
        ):
            return f"topic {topic}: a partition has no leader"
        return None

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop; callable from any thread (e.g. ``asyncio.to_thread``)."""
        self._producer.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=2)
        sweeper, loop = self._sweeper, self._loop
        if sweeper is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                loop.call_soon_threadsafe(sweeper.cancel)

    async def aclose(self, flush_s: float = 10.0) -> None:
        """Flush and stop (from the event loop): reports delivered during the flush
        still settle their publishes."""
        await asyncio.to_thread(self.close, flush_s)
        self._settle_reports()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
