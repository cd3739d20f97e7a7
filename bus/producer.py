"""A Kafka producer whose ``publish`` returns only once the broker confirmed delivery.

librdkafka runs its own network threads; someone has to ``poll`` it to serve the
delivery callbacks (and its log lines). The gateway answers a charge point only after
``publish`` returned, so a CALL is acknowledged only when its event is durably in Kafka.

Every publish waits for one confirmation, so at thousands of messages per second
the per-message overhead shows. Hence:

- once bound to an event loop (``start`` or the first ``publish``), the loop itself polls
  librdkafka: a task owned by the producer calls ``poll(0)`` every ``poll_interval_s``
  while publishes are in flight (every ``idle_poll_s`` otherwise, for log lines and
  errors), and the delivery callbacks resolve their futures directly, with no thread
  hop (a poll thread woke the loop through ``call_soon_threadsafe`` once per batch:
  10-20 % more CPU per publish). Before that, and for ``publish_sync`` callers, a poll
  thread serves the callbacks; a callback that runs off the loop's thread (a
  ``flush`` from a worker thread) hands its report to the loop;
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

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        guard_s: float | None = None,
        poll_interval_s: float = 0.001,
        idle_poll_s: float = 0.1,
    ) -> None:
        if guard_s is None:
            guard_s = float(config.get("message.timeout.ms", 300_000)) / 1000 + 2.0
        self.guard_s = guard_s
        self.poll_interval_s = poll_interval_s
        self.idle_poll_s = idle_poll_s
        self._reports: deque[Report] = deque()
        self._wake_lock = threading.Lock()
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # (deadline, future) in publish order (the same guard for all: sorted)
        self._inflight: deque[tuple[float, Future]] = deque()
        self._unsettled = 0  # publishes on the loop without a report yet
        self._publishing = asyncio.Event()  # set when a publish starts (wakes the poll task)
        self._tasks: set[asyncio.Task[None]] = set()
        # librdkafka's own lines go through the process's logging (served by poll).
        self._producer = _RdProducer(with_kafka_logger(config))
        self._closed = threading.Event()
        self._poller: threading.Thread | None = threading.Thread(
            target=self._poll_thread, name="kafka-poll", daemon=True
        )
        self._poller.start()

    def _poll_thread(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def start(self) -> None:
        """Bind to the running event loop: from now on the loop polls librdkafka and the
        guard runs (else at first publish)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._stop_tasks()
        self._stop_poll_thread()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._publishing = asyncio.Event()
        for job, name in ((self._sweep, "producer-guard"), (self._poll_on_loop, "producer-poll")):
            task = loop.create_task(job(), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _stop_poll_thread(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            self._closed.set()
            poller.join(timeout=2)
            self._closed.clear()

    def _stop_tasks(self) -> list[asyncio.Task[None]]:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def _poll_on_loop(self) -> None:
        poll, publishing = self._producer.poll, self._publishing
        while True:
            poll(0)
            if self._unsettled > 0:
                await asyncio.sleep(self.poll_interval_s)
                continue
            publishing.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that arrives as the event is set, and this loop would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_poll_s):
                    await publishing.wait()

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
        loop_thread = self._loop_thread

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if threading.get_ident() == loop_thread:  # the loop's own poll: settle now
                self._unsettled -= 1
                _settle(future, err, msg)
            else:
                self._hand_to_loop(loop, (future, err, msg))

        self._produce(topic, key, value, headers, on_delivery)
        self._inflight.append((time.monotonic() + self.guard_s, future))
        self._unsettled += 1
        if self._unsettled == 1:
            self._publishing.set()
        return await future

    def _hand_to_loop(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        """(another thread) Queue a report; one loop wake-up per batch of reports."""
        self._reports.append(report)
        with self._wake_lock:
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it
            loop.call_soon_threadsafe(self._settle_reports)

    def _settle_reports(self) -> None:  # event loop
        with self._wake_lock:
            self._wake_scheduled = False
        reports = self._reports
        while reports:
            future, err, msg = reports.popleft()
            self._unsettled -= 1
            _settle(future, err, msg)

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
        if self._poller is None and threading.get_ident() == self._loop_thread:
            # Blocking the loop that would poll: serve the callbacks here.
            deadline = time.monotonic() + timeout
            while not done.is_set() and time.monotonic() < deadline:
                self._producer.poll(0.05)
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
        self._stop_poll_thread()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                loop.call_soon_threadsafe(self._stop_tasks)

    async def aclose(self, flush_s: float = 10.0) -> None:
        """Flush and stop (from the event loop): reports delivered during the flush
        still settle their publishes."""
        tasks = self._stop_tasks()  # the flush serves the callbacks meanwhile
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.close, flush_s)
        self._settle_reports()


def _settle(future: Future, err: KafkaError | None, msg: Message) -> None:
    if future.done():  # failed by the guard already
        return
    if err is not None:
        future.set_exception(PublishError(f"delivery to {msg.topic()} failed: {err.str()}"))
    else:
        future.set_result((msg.partition() or 0, msg.offset() or 0))
