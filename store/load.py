"""Live load (tables ``load_connector_1m``, ``site_load_live``; the aggregates over them):
the load flow's writes (sync psycopg 3, one transaction per batch) and the API's reads
(async).

Writes are idempotent under replay (Bytewax sinks are at-least-once):

* ``load_connector_1m``: upsert on ``(charge_point_id, connector_id, bucket)``; the
  flow re-emits a minute whenever it changes, the latest figure wins (within a batch
  the last row per key). The rows are binary COPYed into a temporary staging table
  (:class:`store.db.StagingTable`) and merged by one ``INSERT ... SELECT ... ON
  CONFLICT DO UPDATE`` that leaves rows whose figures did not change untouched (no dead
  tuple for a replayed row). The same statement records each UTC hour it inserted or
  changed in ``load_aggregate_invalidations``, which ``store.aggregates`` refreshes
  next (late rows included, however old).
* ``site_load_live``: upsert on ``site_id`` unless the stored row is newer (``as_of``),
  so a replay from the start of the topic never moves the live view back in time.

Reads run the same SQL on both storage modes: the aggregates have the same names and
columns whether they are TimescaleDB continuous aggregates (real-time) or plain tables
(as fresh as the last ``store.aggregates`` refresh); docs/storage.md.

Rows are duck-typed (attribute access) so this module does not depend on ``flows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.db import AsyncDb, StagingTable, execute, last_per_key

Resolution = Literal["1m", "1h", "1d"]
# resolution -> relation with (charge_point_id, connector_id, bucket, sample_count,
# avg_power_w, max_power_w, energy_wh)
SERIES_SOURCES: dict[str, str] = {
    "1m": "load_connector_1m",
    "1h": "load_connector_1h",
    "1d": "energy_connector_1d",
}
MAX_POINTS = 10_000


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


# --------------------------------------------------------------------------- writes

STAGING = StagingTable(
    "load_connector_1m_staging",
    (
        ("charge_point_id", "text"),
        ("connector_id", "int4"),
        ("bucket", "timestamptz"),
        ("sample_count", "int4"),
        ("power_sum_w", "float8"),
        ("avg_power_w", "float8"),
        ("max_power_w", "float8"),
        ("energy_wh", "numeric"),
        ("register_wh", "numeric"),
        ("source", "text"),
    ),
)
_MINUTE_COLUMN_LIST = ", ".join(STAGING.column_names)
_UPSERT_MINUTES = f"""
WITH changed AS (
INSERT INTO load_connector_1m AS m ({_MINUTE_COLUMN_LIST})
SELECT {_MINUTE_COLUMN_LIST} FROM {STAGING.name}
ON CONFLICT (charge_point_id, connector_id, bucket) DO UPDATE SET
    sample_count = EXCLUDED.sample_count,
    power_sum_w = EXCLUDED.power_sum_w,
    avg_power_w = EXCLUDED.avg_power_w,
    max_power_w = EXCLUDED.max_power_w,
    energy_wh = EXCLUDED.energy_wh,
    register_wh = EXCLUDED.register_wh,
    source = EXCLUDED.source
WHERE (m.sample_count, m.power_sum_w, m.avg_power_w, m.max_power_w, m.energy_wh,
       m.register_wh, m.source)
    IS DISTINCT FROM (EXCLUDED.sample_count, EXCLUDED.power_sum_w, EXCLUDED.avg_power_w,
       EXCLUDED.max_power_w, EXCLUDED.energy_wh, EXCLUDED.register_wh, EXCLUDED.source)
RETURNING m.bucket
)
INSERT INTO load_aggregate_invalidations (bucket_start, bucket_end)
SELECT hour, hour + INTERVAL '1 hour' FROM (
    SELECT DISTINCT date_bin(INTERVAL '1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')
        AS hour FROM changed
) AS hours
"""

_UPSERT_SITE = """
INSERT INTO site_load_live AS s (
    site_id, as_of, published_at, total_w, capacity_w, utilisation_pct, over_capacity,
    station_count, offline_stations, stations
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (site_id) DO UPDATE SET
    as_of = EXCLUDED.as_of,
    published_at = EXCLUDED.published_at,
    total_w = EXCLUDED.total_w,
    capacity_w = EXCLUDED.capacity_w,
    utilisation_pct = EXCLUDED.utilisation_pct,
    over_capacity = EXCLUDED.over_capacity,
    station_count = EXCLUDED.station_count,
    offline_stations = EXCLUDED.offline_stations,
    stations = EXCLUDED.stations
WHERE EXCLUDED.as_of >= s.as_of
"""


def latest_minutes(minutes: Iterable[Any]) -> list[Any]:
    """One row per ``(charge_point_id, connector_id, bucket)``: the last one given."""
    return last_per_key(minutes, lambda r: (r.charge_point_id, r.connector_id, r.bucket))


def write_load_batch(
    conn: psycopg.Connection[Any], minutes: Sequence[Any], sites: Sequence[Any]
) -> None:
    """Upsert minute rows (``flows.load.logic.MinuteRow``) and site totals
    (``bus.load.SiteLoad``) in one transaction."""
    minute_rows = latest_minutes(minutes)
    site_rows = last_per_key(sites, lambda s: s.site_id)
    if not minute_rows and not site_rows:
        return
    created = bool(minute_rows) and STAGING.missing_on(conn)
    with conn.transaction(), conn.cursor() as cur:
        if minute_rows:
            if created:
                cur.execute(STAGING.create)
            STAGING.copy_rows(
                cur,
                (
                    (
                        r.charge_point_id,
                        r.connector_id,
                        r.bucket,
                        r.sample_count,
                        r.power_sum_w,
                        r.avg_power_w,
                        r.max_power_w,
                        r.energy_wh,
                        r.register_wh,
                        r.source,
                    )
                    for r in minute_rows
                ),
            )
            cur.execute(_UPSERT_MINUTES)
        if site_rows:
            cur.executemany(
                _UPSERT_SITE,
                [
                    (
                        s.site_id,
                        s.as_of,
                        s.published_at,
                        s.total_w,
                        s.capacity_w,
                        s.utilisation_pct,
                        s.over_capacity,
                        s.station_count,
                        s.offline_stations,
                        Jsonb([_station_json(st) for st in s.stations]),
                    )
                    for s in site_rows
                ],
            )
    if created:
        STAGING.created_on(conn)


def _station_json(station: Any) -> dict[str, Any]:
    return {
        "charge_point_id": station.charge_point_id,
        "power_w": station.power_w,
        "as_of": station.as_of.isoformat(),
        "offline": station.offline,
        "connectors": [
            {"connector_id": c.connector_id, "power_w": c.power_w} for c in station.connectors
        ],
    }


async def site_demand(db: AsyncDb, site_id: str) -> tuple[float | None, float | None]:
    """The site's live utilisation (load / grid capacity) and occupancy (connectors in
    use / connectors known, connector 0 left out), each 0..1, None when unknown."""
    rows = await execute(
        db,
        "SELECT (SELECT CASE WHEN capacity_w > 0 THEN total_w / capacity_w END"
        "        FROM site_load_live WHERE site_id = %(site)s),"
        " (SELECT count(*) FILTER (WHERE ca.status IN ('Preparing', 'Charging', 'SuspendedEV',"
        "        'SuspendedEVSE', 'Finishing', 'Reserved'))::float / NULLIF(count(*), 0)"
        "  FROM connector_availability ca JOIN stations st USING (charge_point_id)"
        "  WHERE st.site_id = %(site)s AND ca.connector_id > 0)",
        {"site": site_id},
    )
    utilisation, occupancy = rows[0]
    return utilisation, occupancy
