"""Connector status (tables ``connector_status_history``, ``connector_availability``):
the status flow's writes (sync psycopg 3, one transaction per batch) and the API's reads
(async).

Writes are idempotent under replay (Bytewax sinks are at-least-once):

* ``connector_status_history``: insert, ``ON CONFLICT DO NOTHING`` on
  ``(charge_point_id, connector_id, at, status)`` (also for the ``Offline`` and
  restored-status rows derived from connection events, which carry a ``reason``).
* ``connector_availability``: upsert on ``(charge_point_id, connector_id)``; rows come
  in the flow's per-station order, the last one is the current state.

Rows are duck-typed (attribute access) so this module does not depend on ``flows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from store.db import Where, last_per_key

MAX_HISTORY = 1_000


@dataclass(frozen=True, slots=True)
class AvailabilityRecord:
    charge_point_id: str
    connector_id: int
    site_id: str | None
    status: str
    connector_status: str
    ocpp_status: str
    error_code: str | None
    status_at: datetime
    online: bool
    connection_changed_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StatusChangeRecord:
    connector_id: int
    at: datetime
    status: str
    ocpp_status: str
    error_code: str | None
    reason: str | None


async def list_availability(
    conn: psycopg.AsyncConnection[Any],
    *,
    station: str | None = None,
    site: str | None = None,
    status: str | None = None,
    include_station_level: bool = False,
) -> list[AvailabilityRecord]:
    """Current availability per connector, ordered by station and connector."""
    where = Where()
    where.add_given("a.charge_point_id = %s", station)
    where.add_given("st.site_id = %s", site)
    where.add_given("a.status = %s", status)
    if not include_station_level:
        where.add("a.connector_id > 0")
    async with conn.cursor(row_factory=class_row(AvailabilityRecord)) as cur:
        await cur.execute(
            "SELECT a.charge_point_id, a.connector_id, st.site_id, a.status,"
            " a.connector_status, a.ocpp_status, a.error_code, a.status_at, a.online,"
            " a.connection_changed_at, a.updated_at"
            " FROM connector_availability a"
            " LEFT JOIN stations st ON st.charge_point_id = a.charge_point_id"
            f" WHERE {where.sql}"
            " ORDER BY a.charge_point_id, a.connector_id",
            where.params,
        )
        return await cur.fetchall()


async def status_history(
    conn: psycopg.AsyncConnection[Any],
    charge_point_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    connector_id: int | None = None,
    limit: int = MAX_HISTORY,
) -> list[StatusChangeRecord]:
    """Status changes of one station, newest first; ``start`` inclusive, ``end`` exclusive.

    Rows of one connector at the same instant: an ``Offline`` row is newer than a
    status the station reported, which is newer than a status restored when the
    station came back online (the connection opens before the station reports,
    and drops after its last report)."""
    where = Where()
    where.add("charge_point_id = %s", charge_point_id)
    where.add_given("at >= %s", start)
    where.add_given("at < %s", end)
    where.add_given("connector_id = %s", connector_id)
    async with conn.cursor(row_factory=class_row(StatusChangeRecord)) as cur:
        await cur.execute(
            "SELECT connector_id, at, status, ocpp_status, error_code, reason"
            f" FROM connector_status_history WHERE {where.sql}"
            " ORDER BY at DESC, connector_id, CASE WHEN status = 'Offline' THEN 0"
            " WHEN reason IS NULL THEN 1 ELSE 2 END, status LIMIT %s",
            [*where.params, limit],
        )
        return await cur.fetchall()


# --------------------------------------------------------------------------- writes

_INSERT_HISTORY = """
INSERT INTO connector_status_history (
    charge_point_id, connector_id, at, status, ocpp_status, ocpp_connector_id, error_code,
    reason
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""

_UPSERT_AVAILABILITY = """
INSERT INTO connector_availability AS a (
    charge_point_id, connector_id, status, connector_status, ocpp_status, ocpp_connector_id,
    error_code, status_at, online, connection_changed_at, updated_at
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (charge_point_id, connector_id) DO UPDATE SET
    status = EXCLUDED.status,
    connector_status = EXCLUDED.connector_status,
    ocpp_status = EXCLUDED.ocpp_status,
    ocpp_connector_id = EXCLUDED.ocpp_connector_id,
    error_code = EXCLUDED.error_code,
    status_at = EXCLUDED.status_at,
    online = EXCLUDED.online,
    connection_changed_at = EXCLUDED.connection_changed_at,
    updated_at = EXCLUDED.updated_at
"""


def write_status_batch(
    conn: psycopg.Connection[Any], history: Sequence[Any], availability: Sequence[Any]
) -> None:
    """Insert status history rows and upsert availability rows in one transaction."""
    current = last_per_key(availability, lambda a: (a.charge_point_id, a.connector_id))
    if not history and not current:
        return
    with conn.transaction(), conn.cursor() as cur:
        if history:
            cur.executemany(
                _INSERT_HISTORY,
                [
                    (
                        h.charge_point_id,
                        h.connector_id,
                        h.at,
                        h.status,
                        h.ocpp_status,
                        h.ocpp_connector_id,
                        h.error_code,
                        h.reason,
                    )
                    for h in history
                ],
            )
        if current:
            cur.executemany(
                _UPSERT_AVAILABILITY,
                [
                    (
                        a.charge_point_id,
                        a.connector_id,
                        a.status,
                        a.connector_status,
                        a.ocpp_status,
                        a.ocpp_connector_id,
                        a.error_code,
                        a.status_at,
                        a.online,
                        a.connection_changed_at,
                        a.updated_at,
                    )
                    for a in current
                ],
            )
