"""Read queries over availability, status history and load (psycopg 3, async).

The same SQL runs on both storage modes: the aggregates have the same names and
columns whether they are TimescaleDB continuous aggregates (real-time) or plain
tables (as fresh as the last ``store.aggregates`` refresh); docs/storage.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

Resolution = Literal["1m", "1h", "1d"]
# resolution -> relation with (charge_point_id, connector_id, bucket, sample_count,
# avg_power_w, max_power_w, energy_wh)
SERIES_SOURCES: dict[str, str] = {
    "1m": "load_connector_1m",
    "1h": "load_connector_1h",
    "1d": "energy_connector_1d",
}
MAX_POINTS = 10_000
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


@dataclass(frozen=True, slots=True)
class SiteLoadRecord:
    site_id: str
    name: str
    capacity_w: int | None
    as_of: datetime | None
    published_at: datetime | None
    total_w: float
    utilisation_pct: float | None
    over_capacity: bool
    station_count: int
    offline_stations: int
    stations: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class LoadPoint:
    bucket: datetime
    sample_count: int
    avg_power_w: float | None
    max_power_w: float | None
    energy_wh: float | None


def bucket_start(at: datetime, resolution: Resolution) -> datetime:
    """The start of the UTC bucket holding ``at``.

    >>> from datetime import timezone, timedelta
    >>> bucket_start(datetime(2026, 3, 2, 10, 7, 30, tzinfo=timezone(timedelta(hours=1))), "1d")
    datetime.datetime(2026, 3, 2, 0, 0, tzinfo=datetime.timezone.utc)
    """
    at = at.astimezone(UTC)
    if resolution == "1m":
        return at.replace(second=0, microsecond=0)
    if resolution == "1h":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


async def list_availability(
    conn: psycopg.AsyncConnection[Any],
    *,
    station: str | None = None,
    site: str | None = None,
    status: str | None = None,
    include_station_level: bool = False,
) -> list[AvailabilityRecord]:
    """Current availability per connector, ordered by station and connector."""
    where = ["TRUE"]
    params: list[Any] = []
    if station is not None:
        where.append("a.charge_point_id = %s")
        params.append(station)
    if site is not None:
        where.append("st.site_id = %s")
        params.append(site)
    if status is not None:
        where.append("a.status = %s")
        params.append(status)
    if not include_station_level:
        where.append("a.connector_id > 0")
    async with conn.cursor(row_factory=class_row(AvailabilityRecord)) as cur:
        await cur.execute(
            "SELECT a.charge_point_id, a.connector_id, st.site_id, a.status,"
            " a.connector_status, a.ocpp_status, a.error_code, a.status_at, a.online,"
            " a.connection_changed_at, a.updated_at"
            " FROM connector_availability a"
            " LEFT JOIN stations st ON st.charge_point_id = a.charge_point_id"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY a.charge_point_id, a.connector_id",
            params,
        )
        return await cur.fetchall()


async def station_exists(conn: psycopg.AsyncConnection[Any], charge_point_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    return await cur.fetchone() is not None


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
    where = ["charge_point_id = %s"]
    params: list[Any] = [charge_point_id]
    if start is not None:
        where.append("at >= %s")
        params.append(start)
    if end is not None:
        where.append("at < %s")
        params.append(end)
    if connector_id is not None:
        where.append("connector_id = %s")
        params.append(connector_id)
    params.append(limit)
    async with conn.cursor(row_factory=class_row(StatusChangeRecord)) as cur:
        await cur.execute(
            "SELECT connector_id, at, status, ocpp_status, error_code, reason"
            f" FROM connector_status_history WHERE {' AND '.join(where)}"
            " ORDER BY at DESC, connector_id, CASE WHEN status = 'Offline' THEN 0"
            " WHEN reason IS NULL THEN 1 ELSE 2 END, status LIMIT %s",
            params,
        )
        return await cur.fetchall()


async def site_load(conn: psycopg.AsyncConnection[Any], site_id: str) -> SiteLoadRecord | None:
    """The site's latest live total (zero load if the flow has not seen it yet);
    capacity from ``sites`` (the current setting); None for an unknown site."""
    async with conn.cursor(row_factory=class_row(SiteLoadRecord)) as cur:
        await cur.execute(
            "SELECT s.site_id, s.name, s.capacity_w, l.as_of, l.published_at,"
            " COALESCE(l.total_w, 0) AS total_w,"
            " CASE WHEN s.capacity_w IS NULL THEN NULL"
            "      ELSE round((100 * COALESCE(l.total_w, 0) / s.capacity_w)::numeric, 1)::float8"
            " END AS utilisation_pct,"
            " COALESCE(s.capacity_w IS NOT NULL AND l.total_w > s.capacity_w, false)"
            "   AS over_capacity,"
            " COALESCE(l.station_count, 0) AS station_count,"
            " COALESCE(l.offline_stations, 0) AS offline_stations,"
            " COALESCE(l.stations, '[]'::jsonb) AS stations"
            " FROM sites s LEFT JOIN site_load_live l ON l.site_id = s.site_id"
            " WHERE s.site_id = %s",
            (site_id,),
        )
        return await cur.fetchone()


async def connector_series(
    conn: psycopg.AsyncConnection[Any],
    charge_point_id: str,
    connector_id: int,
    resolution: Resolution,
    start: datetime,
    end: datetime,
) -> list[LoadPoint]:
    """Load of one connector per bucket overlapping ``[start, end)``, oldest first."""
    source = SERIES_SOURCES[resolution]
    start = bucket_start(start, resolution)
    async with conn.cursor(row_factory=class_row(LoadPoint)) as cur:
        await cur.execute(
            "SELECT bucket, sample_count, avg_power_w, max_power_w, energy_wh::float8"
            f" AS energy_wh FROM {source}"
            " WHERE charge_point_id = %s AND connector_id = %s AND bucket >= %s AND bucket < %s"
            " ORDER BY bucket LIMIT %s",
            (charge_point_id, connector_id, start, end, MAX_POINTS),
        )
        return await cur.fetchall()
