"""A Kafka producer whose ``publish`` returns only once the broker confirmed delivery.

librdkafka runs its own network threads; a small polling thread serves the
delivery callbacks and hands each result to the asyncio future that waits for
it. The gateway answers a charge point only after ``publish`` returned, so a
CALL is acknowledged only when its event is durably in Kafka.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as _RdProducer


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


class Producer:
    """Thread-safe producer with awaitable and blocking delivery confirmation."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = _RdProducer(dict(config))
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    async def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Send one message; return (partition, offset) once the broker stored it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, err, msg)

        self._produce(topic, key, value, headers, on_delivery)
        return await future

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
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers or []),
                    on_delivery=on_delivery,
                )
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
                p.leader < 0 or p.error is not None for p in found.partitions.values()):
            return f"topic {topic}: a partition has no leader"
        return None

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=2)


def _settle(future: asyncio.Future[tuple[int, int]], err: KafkaError | None, msg: Message) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(PublishError(f"delivery to {msg.topic()} failed: {err.str()}"))
    else:
        future.set_result((msg.partition() or 0, msg.offset() or 0))
