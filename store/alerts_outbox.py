"""The ``alerts_outbox`` table (filled by :func:`store.alerts.write_alerts_batch`: one row
per new alert version, in the transaction that stores it).

:func:`publish_pending` sends the waiting rows with a caller-supplied ``send`` (which
must return only once the broker confirmed every message) and deletes them in the
transaction that locked them (the table has no ``published_at``: the history is
``alert_events``). A crash after ``send`` and before the commit leaves them in place:
they are sent again next time (at-least-once; consumers de-duplicate on
``(alert_id, version)``, :func:`store.alerts.version_key`). Rows locked by another
publisher are skipped, so several flow workers can run this at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class AlertOutboxMessage:
    alert_id: str
    version_key: str
    station_id: str
    payload: dict[str, Any]  # the FaultAlert version as stored (msgspec builtins)


# Oldest transaction first; within one, each alert's versions in the order they were
# made (last_seen, then the resolved one: the order store.alerts keeps the latest by),
# not by version_key, whose text sorts severities alphabetically.
_PENDING = """
SELECT alert_id, version_key, station_id, payload FROM alerts_outbox
ORDER BY created_at, alert_id, (payload->>'last_seen')::timestamptz,
    payload->>'status' = 'resolved', version_key
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_DELETE = """
DELETE FROM alerts_outbox AS o
USING unnest(%s::text[], %s::text[]) AS sent (alert_id, version_key)
WHERE o.alert_id = sent.alert_id AND o.version_key = sent.version_key
"""


def publish_pending(
    conn: psycopg.Connection[Any],
    send: Callable[[list[AlertOutboxMessage]], None],
    limit: int = 1000,
) -> int:
    """Publish up to ``limit`` waiting versions (in the order they were made); return how many.
    ``send`` raising leaves them waiting."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_PENDING, (limit,))
        messages = [AlertOutboxMessage(*row) for row in cur.fetchall()]
        if not messages:
            return 0
        send(messages)
        cur.execute(_DELETE, ([m.alert_id for m in messages], [m.version_key for m in messages]))
    return len(messages)


def pending_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM alerts_outbox").fetchone()
    return int(row[0]) if row else 0
