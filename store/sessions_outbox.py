"""The ``sessions_outbox`` table (filled with :data:`INSERT_SESSIONS_OUTBOX` by
:func:`store.sessions.write_sessions_batch` and :mod:`store.session_reconcile`).

:func:`publish_pending` sends unpublished rows with a caller-supplied ``send``
(which must return only once the broker confirmed every message) and marks them
published in the same transaction that locked them. A crash after ``send`` and
before the commit leaves them unpublished: they are sent again next time
(at-least-once; consumers de-duplicate on the session id). Rows locked by another
publisher are skipped, so several flow workers can run this at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    session_id: uuid.UUID
    charge_point_id: str
    payload: dict[str, Any]


# The transactional outbox of ``sessions.closed`` (bus.sessions): a row is added only
# in the transaction that first stores a session as closed (and the primary key
# keeps it at one per session), with the message payload as of that moment.
# Parameter: the session ids (uuid[]); rows not closed are left out.
_OUTBOX_PAYLOAD = ", ".join(
    f"'{c}', {c}"
    for c in (
        "session_id",
        "charge_point_id",
        "connector_id",
        "transaction_id",
        "id_tag",
        "started_at",
        "stopped_at",
        "meter_start_wh",
        "meter_stop_wh",
        "energy_wh",
        "energy_source",
        "quality",
        "quality_reasons",
        "stop_reason",
        "closed_by",
        "station_energy_wh",
        "smart_meter_energy_wh",
        "smart_meter_id",
        "ocpp_version",
    )
)


def session_closed_json(closed_at: str) -> str:
    """SQL: a ``sessions`` row as its ``sessions.closed`` message (JSON), closed at the
    SQL expression ``closed_at`` (the columns unqualified: use it where ``sessions`` is
    the innermost table)."""
    return (
        f"jsonb_build_object({_OUTBOX_PAYLOAD},"
        f" 'message_id', replace(session_id::text, '-', ''), 'closed_at', {closed_at})"
    )


INSERT_SESSIONS_OUTBOX = f"""
INSERT INTO sessions_outbox (session_id, charge_point_id, payload)
SELECT session_id, charge_point_id, {session_closed_json("now()")}
FROM sessions WHERE session_id = ANY(%s) AND status = 'closed'
ON CONFLICT (session_id) DO NOTHING
"""

_PENDING = """
SELECT session_id, charge_point_id, payload FROM sessions_outbox
WHERE published_at IS NULL ORDER BY created_at, session_id LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_MARK = "UPDATE sessions_outbox SET published_at = now() WHERE session_id = ANY(%s)"


def publish_pending(
    conn: psycopg.Connection[Any],
    send: Callable[[list[OutboxMessage]], None],
    limit: int = 1000,
) -> int:
    """Publish up to ``limit`` unpublished rows; return how many. ``send`` raising
    leaves them unpublished."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_PENDING, (limit,))
        messages = [OutboxMessage(sid, cp, payload) for sid, cp, payload in cur.fetchall()]
        if not messages:
            return 0
        send(messages)
        cur.execute(_MARK, ([m.session_id for m in messages],))
    return len(messages)


def unpublished_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM sessions_outbox WHERE published_at IS NULL").fetchone()
    return int(row[0]) if row else 0
