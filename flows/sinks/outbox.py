"""The after-commit hook of a flow with a transactional outbox: :class:`OutboxPublisher`
(a :class:`flows.sinks.database.AfterCommit`) publishes the rows its ``pending`` function
hands over (``store.sessions_outbox.publish_pending``, ``store.alerts_outbox.publish_pending``:
they lock the waiting rows, call ``send`` and retire them in the same transaction) to one
topic. The sink calls it after every committed batch and once when it starts (so a
crash between commit and publish is made good on restart); every message must be
confirmed by the broker before ``send`` returns, else the rows stay waiting
(at-least-once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as RdProducer

from bus.producer import PublishError
from runtime.logs import with_kafka_logger

log = logging.getLogger(__name__)

M = TypeVar("M")
# (key, value, headers) of the Kafka message of one outbox row.
OutboxRecord = tuple[bytes, bytes, Sequence[tuple[str, bytes]]]
# Locks up to ``limit`` waiting rows, ``send``s them, retires them; returns how many.
PublishPending = Callable[[psycopg.Connection[Any], Callable[[list[M]], None], int], int]


class OutboxPublisher(Generic[M]):
    """Publishes an outbox's rows (``pending``) to ``topic``, each as ``record(row)``."""

    def __init__(
        self,
        brokers: list[str],
        topic: str,
        kafka_config: dict[str, Any] | None,
        *,
        pending: PublishPending[M],
        record: Callable[[M], OutboxRecord],
        delivery_timeout_s: float = 10.0,
        batch: int = 1000,
    ) -> None:
        self.topic = topic
        self._pending = pending
        self._record = record
        self._config: dict[str, Any] = with_kafka_logger(
            {
                "bootstrap.servers": ",".join(brokers),
                "acks": "all",
                "enable.idempotence": False,
                "linger.ms": 5,
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                **(kafka_config or {}),
            }
        )
        self._timeout = delivery_timeout_s + 2.0
        self._batch = batch
        self._producer: RdProducer | None = None

    def send(self, rows: list[M]) -> None:
        """Produce every row; return once all are confirmed, else raise PublishError."""
        if self._producer is None:
            self._producer = RdProducer(self._config)
        producer = self._producer
        errors: list[str] = []
        confirmed = 0

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            nonlocal confirmed
            if err is not None:
                errors.append(err.str())
            else:
                confirmed += 1

        try:
            for row in rows:
                key, value, headers = self._record(row)
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            value=value,
                            key=key,
                            headers=list(headers),
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(self._timeout)
        except KafkaException as exc:
            raise PublishError(f"cannot publish to {self.topic}: {exc}") from exc
        if errors or confirmed < len(rows):
            raise PublishError(
                f"{len(rows) - confirmed} of {len(rows)} {self.topic} messages "
                f"unconfirmed: {errors[0] if errors else 'no delivery report in time'}"
            )

    def publish(self, conn: psycopg.Connection[Any]) -> int:
        """Publish everything waiting; errors are logged and left for the next call."""
        total = 0
        try:
            while True:
                sent = self._pending(conn, self.send, self._batch)
                total += sent
                if sent < self._batch:
                    return total
        except (PublishError, psycopg.Error) as exc:
            log.warning("%s not published yet (%s); retrying after the next batch", self.topic, exc)
            return total

    def after_commit(self, conn: psycopg.Connection[Any]) -> None:
        """The sink committed rows (their outbox rows with them): publish them."""
        self.publish(conn)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
            self._producer = None
