"""Id tokens (OCPP 1.6 id tags, table ``id_tags``) and the transactions they hold open
(``open_transactions``, ``ocpp_transaction_id_seq``; owned by the gateway).

Sync helpers are for the launcher, the CLI and tests; the async queries are what the
gateway runs per Authorize and StartTransaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from store.db import AsyncDb, execute


@dataclass(frozen=True, slots=True)
class IdTagRecord:
    id_tag: str
    status: str
    expiry_date: datetime | None
    parent_id_tag: str | None
    # The parent's own entry when the parent is in the list too (a blocked or expired
    # group blocks or expires its members).
    parent_status: str | None = None
    parent_expiry_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    charge_point_id: str
    transaction_id: str
    connector_id: int
    id_tag: str
    started_at: datetime


def add_id_tag(
    database_url: str,
    id_tag: str,
    status: str = "Accepted",
    expiry_date: datetime | None = None,
    parent_id_tag: str | None = None,
) -> None:
    """Insert or update one authorisation token."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO id_tags (id_tag, status, expiry_date, parent_id_tag)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (id_tag) DO UPDATE SET status = EXCLUDED.status,
                expiry_date = EXCLUDED.expiry_date, parent_id_tag = EXCLUDED.parent_id_tag
            """,
            (id_tag, status, expiry_date, parent_id_tag),
        )


async def get_id_tag(db: AsyncDb, id_tag: str) -> IdTagRecord | None:
    rows = await execute(
        db,
        """
        SELECT t.id_tag, t.status, t.expiry_date, t.parent_id_tag, p.status, p.expiry_date
        FROM id_tags t LEFT JOIN id_tags p ON p.id_tag = t.parent_id_tag
        WHERE t.id_tag = %s
        """,
        (id_tag,),
    )
    if not rows:
        return None
    return IdTagRecord(*rows[0])


async def next_transaction_id(db: AsyncDb) -> int:
    """A transaction id unique across gateway restarts and replicas (never reused)."""
    rows = await execute(db, "SELECT nextval('ocpp_transaction_id_seq')", ())
    return int(rows[0][0])


# --------------------------------------------------------------------------- open transactions


async def open_transactions_for_tag(
    db: AsyncDb, id_tag: str, newer_than: datetime
) -> list[OpenTransaction]:
    rows = await execute(
        db,
        """
        SELECT charge_point_id, transaction_id, connector_id, id_tag, started_at
        FROM open_transactions WHERE id_tag = %s AND started_at > %s
        ORDER BY started_at
        """,
        (id_tag, newer_than),
    )
    return [OpenTransaction(*row) for row in rows]


async def open_transaction(
    db: AsyncDb,
    charge_point_id: str,
    transaction_id: str,
    connector_id: int | None,
    id_tag: str,
    started_at: datetime,
) -> None:
    """A transaction started with ``id_tag``; a connector has one transaction at a
    time, so an older one left open on the same connector is dropped. Unknown
    connector (None): stored as 0, nothing dropped."""
    await execute(
        db,
        """
        WITH gone AS (
            DELETE FROM open_transactions WHERE charge_point_id = %s AND connector_id = %s
                AND transaction_id <> %s
        )
        INSERT INTO open_transactions (charge_point_id, transaction_id, connector_id, id_tag,
                                       started_at)
        VALUES (%s, %s, COALESCE(%s, 0), %s, %s)
        ON CONFLICT (charge_point_id, transaction_id) DO UPDATE SET id_tag = EXCLUDED.id_tag
        """,
        (
            charge_point_id,
            connector_id,
            transaction_id,
            charge_point_id,
            transaction_id,
            connector_id,
            id_tag,
            started_at,
        ),
    )


async def close_transaction(db: AsyncDb, charge_point_id: str, transaction_id: str) -> None:
    await execute(
        db,
        "DELETE FROM open_transactions WHERE charge_point_id = %s AND transaction_id = %s",
        (charge_point_id, transaction_id),
    )


async def customer_group_of(db: AsyncDb, id_tag: str) -> str | None:
    """The customer group of a token (None: unknown token or in no group)."""
    rows = await execute(db, "SELECT customer_group FROM id_tags WHERE id_tag = %s", (id_tag,))
    return rows[0][0] if rows else None


async def set_customer_group(db: AsyncDb, id_tag: str, customer_group: str | None) -> bool:
    """Put a token in a group (None: in none); False if there is no such token."""
    rows = await execute(
        db,
        "UPDATE id_tags SET customer_group = %s WHERE id_tag = %s RETURNING id_tag",
        (customer_group, id_tag),
    )
    return bool(rows)
