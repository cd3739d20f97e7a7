"""Publishes the ``sessions_outbox`` to ``sessions.closed`` (see :mod:`store.outbox`).

The sessions sink calls :meth:`OutboxPublisher.publish` after every committed
batch and once when it starts (so a crash between commit and publish is made good
on restart). Messages are :class:`bus.sessions.SessionClosed`, key = charge point
id, header ``session_id``; every one must be confirmed by the broker before the
rows are marked published.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import Producer as RdProducer

from bus.producer import PublishError
from bus.sessions import encode_session_closed, session_closed_from_row
from runtime.logs import with_kafka_logger
from store.outbox import OutboxMessage, publish_pending

log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(
        self,
        brokers: list[str],
        topic: str,
        kafka_config: dict[str, Any] | None = None,
        *,
        delivery_timeout_s: float = 10.0,
        batch: int = 1000,
    ) -> None:
        self.topic = topic
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

    def send(self, messages: list[OutboxMessage]) -> None:
        """Produce every message; return once all are confirmed, else raise PublishError."""
        if self._producer is None:
            self._producer = RdProducer(self._config)
        errors: list[str] = []
        confirmed = 0

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            nonlocal confirmed
            if err is not None:
                errors.append(err.str())
            else:
                confirmed += 1

        try:
            for m in messages:
                value = encode_session_closed(session_closed_from_row(m.payload))
                while True:
                    try:
                        self._producer.produce(
                            self.topic,
                            value=value,
                            key=m.charge_point_id.encode(),
                            headers=[("session_id", str(m.session_id).encode())],
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        self._producer.poll(0.05)
            self._producer.flush(self._timeout)
        except KafkaException as exc:
            raise PublishError(f"cannot publish to {self.topic}: {exc}") from exc
        if errors or confirmed < len(messages):
            raise PublishError(
                f"{len(messages) - confirmed} of {len(messages)} sessions.closed messages "
                f"unconfirmed: {errors[0] if errors else 'no delivery report in time'}"
            )

    def publish(self, conn: psycopg.Connection[Any]) -> int:
        """Publish everything pending; errors are logged and left for the next call."""
        total = 0
        try:
            while True:
                sent = publish_pending(conn, self.send, self._batch)
                total += sent
                if sent < self._batch:
                    return total
        except (PublishError, psycopg.Error) as exc:
            log.warning(
                "sessions.closed not published yet (%s); retrying after the next batch", exc
            )
            return total

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
            self._producer = None
