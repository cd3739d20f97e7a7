"""Payment methods per id token (table ``payment_methods``): how a session started with
an id tag is paid, and the active sessions still waiting for their pre-authorisation.

Async (the API's request connection, or the billing worker's pool), like
:mod:`store.id_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from store.db import AsyncDb, execute

Provider = Literal["wallet", "postpaid", "stripe"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 500

_COLUMNS = "id_tag, provider, customer, payment_method, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    id_tag: str
    provider: str
    customer: str
    payment_method: str | None  # Stripe's pm_... id; None for the wallet and postpaid
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AwaitingPreauth:
    """An active session whose id tag has a payment method and no payment yet."""

    session_id: str
    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str
    started_at: datetime
    meter_start_wh: int
    method: PaymentMethod


async def set_method(
    db: AsyncDb, id_tag: str, provider: Provider, customer: str, payment_method: str | None
) -> tuple[PaymentMethod, bool]:
    """Insert or replace the id tag's method; True when it is new."""
    rows = await execute(
        db,
        f"""
        INSERT INTO payment_methods (id_tag, provider, customer, payment_method)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (id_tag) DO UPDATE SET provider = EXCLUDED.provider,
            customer = EXCLUDED.customer, payment_method = EXCLUDED.payment_method,
            updated_at = now()
        RETURNING {_COLUMNS}, xmax = 0
        """,
        (id_tag, provider, customer, payment_method),
    )
    *values, created = rows[0]
    return PaymentMethod(*values), bool(created)


async def get_method(db: AsyncDb, id_tag: str) -> PaymentMethod | None:
    rows = await execute(db, f"SELECT {_COLUMNS} FROM payment_methods WHERE id_tag = %s", (id_tag,))
    return PaymentMethod(*rows[0]) if rows else None


async def delete_method(db: AsyncDb, id_tag: str) -> bool:
    """False when the id tag had none. Payments already made keep their customer."""
    rows = await execute(db, "DELETE FROM payment_methods WHERE id_tag = %s RETURNING 1", (id_tag,))
    return bool(rows)


async def list_methods(
    db: AsyncDb, *, after: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[PaymentMethod]:
    """By id tag, from after ``after`` (a keyset cursor)."""
    rows = await execute(
        db,
        f"SELECT {_COLUMNS} FROM payment_methods WHERE %s::text IS NULL OR id_tag > %s"
        " ORDER BY id_tag LIMIT %s",
        (after, after, max(1, min(limit, MAX_LIMIT))),
    )
    return [PaymentMethod(*row) for row in rows]


async def awaiting_preauth(
    db: AsyncDb, *, after: tuple[datetime, str] | None = None, limit: int = DEFAULT_LIMIT
) -> list[AwaitingPreauth]:
    """Active sessions whose id tag has a payment method and which have no payment row
    (none tried yet: a declined one has its row, status failed), oldest first, from
    after ``after`` (the last one's ``(started_at, session_id)``: a keyset cursor, so a
    caller pages through all of them even when the first ones stay waiting)."""
    rows = await execute(
        db,
        f"""
        SELECT s.session_id::text, s.charge_point_id, s.connector_id, s.transaction_id,
            s.id_tag, s.started_at, s.meter_start_wh,
            {", ".join("m." + c.strip() for c in _COLUMNS.split(","))}
        FROM sessions s
        JOIN payment_methods m ON m.id_tag = s.id_tag
        WHERE s.status = 'active'
            AND (%s::timestamptz IS NULL OR (s.started_at, s.session_id) > (%s, %s::uuid))
            AND NOT EXISTS (
                SELECT 1 FROM session_payments p WHERE p.session_id = s.session_id::text)
        ORDER BY s.started_at, s.session_id
        LIMIT %s
        """,
        (*((after[0], after[0], after[1]) if after else (None, None, None)), limit),
    )
    return [
        AwaitingPreauth(
            session_id=row[0],
            charge_point_id=row[1],
            connector_id=row[2],
            transaction_id=row[3],
            id_tag=row[4],
            started_at=row[5],
            meter_start_wh=row[6],
            method=PaymentMethod(*row[7:]),
        )
        for row in rows
    ]


async def billed_customer(db: AsyncDb, session_id: str, id_tag: str | None) -> str | None:
    """Who a session's CDR is billed to: the customer its payment was made for, else its
    id tag's payment method's customer, else the id tag itself."""
    rows = await execute(
        db,
        "SELECT COALESCE("
        " (SELECT customer FROM session_payments WHERE session_id = %s),"
        " (SELECT customer FROM payment_methods WHERE id_tag = %s), %s)",
        (session_id, id_tag, id_tag),
    )
    return None if rows[0][0] is None else str(rows[0][0])


async def method_at_start(
    db: AsyncDb, id_tag: str | None, started_at: datetime
) -> PaymentMethod | None:
    """The id tag's payment method if it had one when the session started (created no
    later than ``started_at``, a station's clock: a method added afterwards does not
    make an old session payable, whatever replays it)."""
    if id_tag is None:
        return None
    method = await get_method(db, id_tag)
    return method if method is not None and method.created_at <= started_at else None
