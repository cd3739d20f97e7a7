"""Session payments (tables ``session_payments``, ``payment_events``): one payment per
session and the log of what happened to it. Sync psycopg 3, like the ledger: the
payment service that calls it runs the (synchronous) providers.

The service holds a session's row lock (:func:`lock`) across the provider call and the
update that records its outcome, so two capture requests for one session never reach
the provider together, and a crash between the two leaves the row as it was: the
retry repeats the call with the same idempotency key and gets the first outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from store.db import AsyncDb, execute

COLUMNS = (
    "session_id, provider, customer, currency, reference, status, authorized_minor, "
    "captured_minor, refunded_minor, final_cost_minor, shortfall_minor, attempts, "
    "next_attempt_at, last_error, flagged, created_at, updated_at"
)


@dataclass(frozen=True)
class SessionPayment:
    session_id: str
    provider: str
    customer: str
    currency: str
    reference: str | None
    status: str
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    final_cost_minor: int | None
    shortfall_minor: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    flagged: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PaymentEvent:
    event_id: int
    session_id: str
    at: datetime
    kind: str
    actor: str
    provider_event_id: str | None
    amount_minor: int | None
    detail: str | None


def _row(values: dict[str, Any] | None) -> SessionPayment | None:
    return None if values is None else SessionPayment(**values)


def start(
    conn: psycopg.Connection[Any], session_id: str, provider: str, customer: str, currency: str
) -> bool:
    """The session's payment, ``authorizing``; False when the session has one already."""
    cur = conn.execute(
        "INSERT INTO session_payments (session_id, provider, customer, currency, status)"
        " VALUES (%s, %s, %s, %s, 'authorizing') ON CONFLICT (session_id) DO NOTHING",
        (session_id, provider, customer, currency),
    )
    return cur.rowcount == 1


def get(conn: psycopg.Connection[Any], session_id: str) -> SessionPayment | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {COLUMNS} FROM session_payments WHERE session_id = %s", (session_id,))
        return _row(cur.fetchone())


def lock(conn: psycopg.Connection[Any], session_id: str) -> SessionPayment | None:
    """The row, locked until the caller's transaction ends."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM session_payments WHERE session_id = %s FOR UPDATE",
            (session_id,),
        )
        return _row(cur.fetchone())


def update(conn: psycopg.Connection[Any], session_id: str, **fields: Any) -> None:
    """Set ``fields`` (column names of ``session_payments``) and ``updated_at``."""
    allowed = set(COLUMNS.replace(" ", "").split(",")) - {"session_id", "created_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not columns of session_payments: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    conn.execute(
        f"UPDATE session_payments SET {assignments}, updated_at = now()"
        " WHERE session_id = %(session_id)s",
        {**fields, "session_id": session_id},
    )


def log(
    conn: psycopg.Connection[Any],
    session_id: str,
    kind: str,
    actor: str,
    *,
    amount_minor: int | None = None,
    detail: str | None = None,
    provider_event_id: str | None = None,
) -> bool:
    """Append to the session's payment log; False when ``provider_event_id`` was logged
    before (a redelivered webhook)."""
    cur = conn.execute(
        "INSERT INTO payment_events (session_id, kind, actor, provider_event_id,"
        " amount_minor, detail) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (provider_event_id) DO NOTHING",
        (session_id, kind, actor, provider_event_id, amount_minor, detail),
    )
    return cur.rowcount == 1


def logged(conn: psycopg.Connection[Any], provider_event_id: str) -> bool:
    """Whether an event (a provider's, or a request's own key) is in the log."""
    row = conn.execute(
        "SELECT 1 FROM payment_events WHERE provider_event_id = %s", (provider_event_id,)
    ).fetchone()
    return row is not None


def events(conn: psycopg.Connection[Any], session_id: str) -> list[PaymentEvent]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT event_id, session_id, at, kind, actor, provider_event_id, amount_minor,"
            " detail FROM payment_events WHERE session_id = %s ORDER BY event_id",
            (session_id,),
        )
        return [PaymentEvent(**row) for row in cur.fetchall()]


def due(conn: psycopg.Connection[Any], now: datetime, limit: int = 100) -> list[str]:
    """Sessions whose failed capture is due for another try."""
    rows = conn.execute(
        "SELECT session_id FROM session_payments WHERE next_attempt_at <= %s"
        " ORDER BY next_attempt_at LIMIT %s",
        (now, limit),
    ).fetchall()
    return [row[0] for row in rows]


def by_reference(conn: psycopg.Connection[Any], provider: str, reference: str) -> str | None:
    """The session a provider's payment belongs to."""
    row = conn.execute(
        "SELECT session_id FROM session_payments WHERE provider = %s AND reference = %s",
        (provider, reference),
    ).fetchone()
    return None if row is None else str(row[0])


def flagged(conn: psycopg.Connection[Any], limit: int = 100) -> list[SessionPayment]:
    """Payments billing must look at (a capture that failed for good, a shortfall)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM session_payments WHERE flagged IS NOT NULL"
            " ORDER BY updated_at LIMIT %s",
            (limit,),
        )
        return [SessionPayment(**row) for row in cur.fetchall()]


async def payment_summary(db: AsyncDb, session_id: str) -> tuple[str, str, str, int, int] | None:
    """(provider, status, currency, captured, refunded minor units) of the session's
    payment, for readers on the async side (receipts)."""
    rows = await execute(
        db,
        "SELECT provider, status, currency, captured_minor, refunded_minor"
        " FROM session_payments WHERE session_id = %s",
        (session_id,),
    )
    if not rows:
        return None
    provider, state, currency, captured, refunded = rows[0]
    return str(provider), str(state), str(currency), int(captured), int(refunded)
