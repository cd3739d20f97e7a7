"""Id tokens (OCPP 1.6 id tags, table ``id_tags``) and the transactions they hold open
(``open_transactions``, ``ocpp_transaction_id_seq``; owned by the gateway).

Sync helpers are for the launcher, the CLI and tests; the async queries are what the
gateway runs per Authorize and StartTransaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from store.db import AsyncDb, execute
from store.registry import DEFAULT_LIMIT, NotFound, Page, fetch, integrity, page_of


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


# --------------------------------------------------------------------------- the API's registry

TOKEN_TYPES = ("RFID", "app", "PIN", "central")
STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


@dataclass(frozen=True, slots=True)
class IdTokenRecord:
    id_tag: str
    token_type: str
    status: str
    expiry_date: datetime | None
    parent_id_tag: str | None
    customer_ref: str | None
    customer_group: str | None
    membership_tier: str
    created_at: datetime
    updated_at: datetime


ID_TOKEN_FIELDS = (
    "token_type",
    "status",
    "expiry_date",
    "parent_id_tag",
    "customer_ref",
    "customer_group",
    "membership_tier",
)
_TOKEN = f"id_tag, {', '.join(ID_TOKEN_FIELDS)}, created_at, updated_at"


async def create_id_token(
    conn: AsyncConnection[Any], id_tag: str, fields: dict[str, Any]
) -> IdTokenRecord:
    """A new token (:class:`store.registry.Conflict` when it exists). The gateway's
    Authorize and transaction starts decide with it (cached ``id_tag_cache_ttl_s``)."""
    with integrity(f"id tag {id_tag!r} exists already", "unknown reference"):
        rows = await fetch(
            conn,
            f"INSERT INTO id_tags (id_tag, {', '.join(ID_TOKEN_FIELDS)})"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_TOKEN}",
            (id_tag, *(fields[name] for name in ID_TOKEN_FIELDS)),
        )
    return IdTokenRecord(*rows[0])


async def get_id_token(conn: AsyncConnection[Any], id_tag: str) -> IdTokenRecord | None:
    rows = await fetch(conn, f"SELECT {_TOKEN} FROM id_tags WHERE id_tag = %s", (id_tag,))
    return IdTokenRecord(*rows[0]) if rows else None


async def list_id_tokens(
    conn: AsyncConnection[Any],
    *,
    status: str | None = None,
    parent_id_tag: str | None = None,
    customer_ref: str | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[IdTokenRecord]:
    rows = await fetch(
        conn,
        f"SELECT {_TOKEN} FROM id_tags WHERE (%(st)s::text IS NULL OR status = %(st)s)"
        " AND (%(parent)s::text IS NULL OR parent_id_tag = %(parent)s)"
        " AND (%(customer)s::text IS NULL OR customer_ref = %(customer)s)"
        " AND (%(after)s::text IS NULL OR id_tag > %(after)s) ORDER BY id_tag LIMIT %(n)s",
        {
            "st": status,
            "parent": parent_id_tag,
            "customer": customer_ref,
            "after": after,
            "n": limit + 1,
        },
    )
    return page_of([IdTokenRecord(*r) for r in rows], limit, lambda t: t.id_tag)


async def update_id_token(
    conn: AsyncConnection[Any], id_tag: str, changes: dict[str, Any]
) -> IdTokenRecord:
    """``changes``: any of :data:`ID_TOKEN_FIELDS` (nullable ones may be set to None)."""
    names = [name for name in changes if name in ID_TOKEN_FIELDS]
    sets = "".join(f"{name} = %s, " for name in names)
    rows = await fetch(
        conn,
        f"UPDATE id_tags SET {sets}updated_at = now() WHERE id_tag = %s RETURNING {_TOKEN}",
        (*(changes[name] for name in names), id_tag),
    )
    if not rows:
        raise NotFound(f"id tag {id_tag!r} not found")
    return IdTokenRecord(*rows[0])


async def delete_id_token(conn: AsyncConnection[Any], id_tag: str) -> bool:
    """Remove a token from the list (the gateway answers Invalid for it from then on;
    sessions keep naming it). False when there was none."""
    rows = await fetch(conn, "DELETE FROM id_tags WHERE id_tag = %s RETURNING id_tag", (id_tag,))
    return bool(rows)
