"""Station registry, id tags and the OCPP transaction id sequence (tables owned by the gateway).

Sync helpers are for the launcher and tests; the async queries are what the
gateway runs per CALL. SQL lives here and stays thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

AsyncDb = AsyncConnectionPool | psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class IdTagRecord:
    id_tag: str
    status: str
    expiry_date: datetime | None
    parent_id_tag: str | None


# --------------------------------------------------------------------------- sync helpers


def provision_station(database_url: str, charge_point_id: str, site_id: str | None = None) -> None:
    """Register a station (idempotent); creates the site row if ``site_id`` is new."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        if site_id is not None:
            conn.execute(
                "INSERT INTO sites (site_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (site_id, site_id),
            )
        conn.execute(
            """
            INSERT INTO stations (charge_point_id, site_id) VALUES (%s, %s)
            ON CONFLICT (charge_point_id) DO UPDATE
                SET site_id = COALESCE(EXCLUDED.site_id, stations.site_id)
            """,
            (charge_point_id, site_id),
        )


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


# --------------------------------------------------------------------------- async queries


async def _execute(db: AsyncDb, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall() if cur.description else []
            return list(rows)
    cur = await db.execute(query, params)
    return list(await cur.fetchall()) if cur.description else []


async def get_id_tag(db: AsyncDb, id_tag: str) -> IdTagRecord | None:
    rows = await _execute(
        db, "SELECT id_tag, status, expiry_date, parent_id_tag FROM id_tags WHERE id_tag = %s",
        (id_tag,),
    )
    if not rows:
        return None
    return IdTagRecord(*rows[0])


async def station_exists(db: AsyncDb, charge_point_id: str) -> bool:
    rows = await _execute(
        db, "SELECT 1 FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    return bool(rows)


async def upsert_station_boot(
    db: AsyncDb,
    charge_point_id: str,
    *,
    vendor: str,
    model: str,
    serial_number: str | None,
    firmware_version: str | None,
    ocpp_version: str,
    booted_at: datetime,
) -> None:
    await _execute(
        db,
        """
        INSERT INTO stations (charge_point_id, vendor, model, serial_number, firmware_version,
                              ocpp_version, last_boot_at, last_seen_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (charge_point_id) DO UPDATE SET vendor = EXCLUDED.vendor,
            model = EXCLUDED.model, serial_number = EXCLUDED.serial_number,
            firmware_version = EXCLUDED.firmware_version, ocpp_version = EXCLUDED.ocpp_version,
            last_boot_at = EXCLUDED.last_boot_at, last_seen_at = EXCLUDED.last_seen_at
        """,
        (charge_point_id, vendor, model, serial_number, firmware_version, ocpp_version,
         booted_at, booted_at),
    )


async def upsert_connector_status(
    db: AsyncDb,
    charge_point_id: str,
    connector_id: int,
    *,
    status: str,
    error_code: str,
    status_at: datetime,
) -> None:
    """Latest status per connector; an older status never overwrites a newer one."""
    await _execute(
        db,
        """
        WITH s AS (
            INSERT INTO stations (charge_point_id) VALUES (%s) ON CONFLICT DO NOTHING
        )
        INSERT INTO connectors (charge_point_id, connector_id, status, error_code, status_at)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (charge_point_id, connector_id) DO UPDATE SET status = EXCLUDED.status,
            error_code = EXCLUDED.error_code, status_at = EXCLUDED.status_at
        WHERE connectors.status_at IS NULL OR connectors.status_at <= EXCLUDED.status_at
        """,
        (charge_point_id, charge_point_id, connector_id, status, error_code, status_at),
    )


async def touch_last_seen(db: AsyncDb, charge_point_id: str, seen_at: datetime) -> None:
    await _execute(
        db,
        """
        INSERT INTO stations (charge_point_id, last_seen_at) VALUES (%s, %s)
        ON CONFLICT (charge_point_id) DO UPDATE SET last_seen_at =
            GREATEST(stations.last_seen_at, EXCLUDED.last_seen_at)
        """,
        (charge_point_id, seen_at),
    )


async def next_transaction_id(db: AsyncDb) -> int:
    """A transaction id unique across gateway restarts and replicas (never reused)."""
    rows = await _execute(db, "SELECT nextval('ocpp_transaction_id_seq')", ())
    return int(rows[0][0])
