"""Publishes the ``sessions_outbox`` to ``sessions.closed`` (see :mod:`store.sessions_outbox`).

:func:`sessions_outbox_publisher` is the sessions sink's after-commit hook
(:class:`flows.sinks.outbox.OutboxPublisher`). Messages are
:class:`bus.sessions.SessionClosed`, key = charge point id, header ``session_id``;
every one must be confirmed by the broker before the rows are marked published.
"""

from __future__ import annotations

from typing import Any

from bus.sessions import encode_session_closed, session_closed_from_row
from flows.sinks.outbox import OutboxPublisher, OutboxRecord
from store.sessions_outbox import OutboxMessage, publish_pending


def session_closed_record(m: OutboxMessage) -> OutboxRecord:
    value = encode_session_closed(session_closed_from_row(m.payload))
    return m.charge_point_id.encode(), value, [("session_id", str(m.session_id).encode())]


def sessions_outbox_publisher(
    brokers: list[str], topic: str, kafka_config: dict[str, Any] | None = None, **options: Any
) -> OutboxPublisher[OutboxMessage]:
    """The sessions outbox -> ``topic`` (``options``: delivery_timeout_s, batch)."""
    return OutboxPublisher(
        brokers,
        topic,
        kafka_config,
        pending=publish_pending,
        record=session_closed_record,
        **options,
    )
