"""The gateway's Kafka producer: ``bus.producer.Producer`` with cheaper confirmations.

Every CALL awaits one publish (publish-before-ack), so at a few thousand CALLs per
second the per-message overhead of the base class shows: each delivery report wakes
the event loop on its own (``call_soon_threadsafe`` = a self-pipe write and a loop
iteration per message), and each publish arms its own timeout timer. Here:

- delivery reports are collected by the poll thread and handed to the event loop in
  batches: one wake-up per batch of reports, however many messages it confirms;
- the guard against a report that never comes (librdkafka's ``message.timeout.ms``
  normally fails the message itself) is one sweeper task that fails publishes older
  than ``guard_s`` with ``PublishError``, not a timer per publish.

Semantics are the base class's: ``publish`` returns (partition, offset) only after
the broker confirmed the message, and raises ``PublishError`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message

from bus.producer import Producer, PublishError

Report = tuple["asyncio.Future[tuple[int, int]]", KafkaError | None, Message]


class GatewayProducer(Producer):
    def __init__(self, config: Mapping[str, Any], *, guard_s: float = 7.0) -> None:
        self.guard_s = guard_s
        self._reports: deque[Report] = deque()
        self._wake_lock = threading.Lock()
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # (deadline, future) in publish order (the same guard for all: sorted)
        self._inflight: deque[tuple[float, asyncio.Future[tuple[int, int]]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        super().__init__(config)

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
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use (or a new loop): bind and start sweeping
            self.start()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:  # poll thread
            self._reports.append((future, err, msg))
            with self._wake_lock:
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
                future.set_exception(
                    PublishError(f"delivery to {msg.topic()} failed: {err.str()}"))
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
                    future.set_exception(PublishError(
                        f"no delivery report within {self.guard_s:g} s"))

    def close(self, timeout: float = 10.0) -> None:
        super().close(timeout)
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def aclose(self, flush_s: float = 10.0) -> None:
        """Flush and stop (from the event loop): reports delivered during the flush
        still settle their publishes."""
        await asyncio.to_thread(super().close, flush_s)
        self._settle_reports()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
