"""Writers for the load and status flows (sync psycopg 3; one transaction per batch).

Idempotent under replay (Bytewax sinks are at-least-once):

* ``load_connector_1m``: upsert on ``(charge_point_id, connector_id, bucket)``; the
  flow re-emits a minute whenever it changes, the latest figure wins (within a batch
  the last row per key). The rows are binary COPYed into a temporary staging table
  (created once per connection, ``ON COMMIT DELETE ROWS``) and merged by one
  ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` that leaves rows whose figures did
  not change untouched (no dead tuple for a replayed row). The same statement records
  each UTC hour it inserted or changed in ``load_aggregate_invalidations``, which
  ``store.aggregates`` refreshes next (late rows included, however old).
* ``site_load_live``: upsert on ``site_id`` unless the stored row is newer (``as_of``),
  so a replay from the start of the topic never moves the live view back in time.
* ``connector_status_history``: insert, ``ON CONFLICT DO NOTHING`` on
  ``(charge_point_id, connector_id, at, status)`` (also for the ``Offline`` and
  restored-status rows derived from connection events, which carry a ``reason``).
* ``connector_availability``: upsert on ``(charge_point_id, connector_id)``; rows come
  in the flow's per-station order, the last one is the current state.

Rows are duck-typed (attribute access) so this module does not depend on ``flows``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_MINUTE_COLUMNS = (
    "charge_point_id",
    "connector_id",
    "bucket",
    "sample_count",
    "power_sum_w",
    "avg_power_w",
    "max_power_w",
    "energy_wh",
    "register_wh",
    "source",
)
_MINUTE_TYPES = (
    "text",
    "int4",
    "timestamptz",
    "int4",
    "float8",
    "float8",
    "float8",
    "numeric",
    "numeric",
    "text",
)
_MINUTES_STAGING = "load_connector_1m_staging"
_CREATE_MINUTES_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_MINUTES_STAGING} ("
    + ", ".join(f"{c} {t}" for c, t in zip(_MINUTE_COLUMNS, _MINUTE_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)
_COPY_MINUTES = f"COPY {_MINUTES_STAGING} ({', '.join(_MINUTE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_UPSERT_MINUTES = f"""
WITH changed AS (
INSERT INTO load_connector_1m AS m ({", ".join(_MINUTE_COLUMNS)})
SELECT {", ".join(_MINUTE_COLUMNS)} FROM {_MINUTES_STAGING}
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


# Connections whose temporary staging table exists (added only after a commit, as a
# rolled-back CREATE TEMP TABLE leaves nothing behind).
_staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def _last_per_key(rows: Iterable[Any], key: Any) -> list[Any]:
    latest: dict[Any, Any] = {}
    for row in rows:
        k = key(row)
        latest.pop(k, None)
        latest[k] = row
    return list(latest.values())


def latest_minutes(minutes: Iterable[Any]) -> list[Any]:
    """One row per ``(charge_point_id, connector_id, bucket)``: the last one given."""
    latest: dict[Any, Any] = {}
    for r in minutes:
        latest[(r.charge_point_id, r.connector_id, r.bucket)] = r
    return list(latest.values())


def write_load_batch(
    conn: psycopg.Connection[Any], minutes: Sequence[Any], sites: Sequence[Any]
) -> None:
    """Upsert minute rows (``flows.load.logic.MinuteRow``) and site totals
    (``bus.load.SiteLoad``) in one transaction."""
    minute_rows = latest_minutes(minutes)
    site_rows = _last_per_key(sites, lambda s: s.site_id)
    if not minute_rows and not site_rows:
        return
    created = bool(minute_rows) and conn not in _staged
    with conn.transaction(), conn.cursor() as cur:
        if minute_rows:
            if created:
                cur.execute(_CREATE_MINUTES_STAGING)
            with cur.copy(_COPY_MINUTES) as copy:
                copy.set_types(_MINUTE_TYPES)
                write = copy.write_row
                for r in minute_rows:
                    write(
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
    if created and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        _staged.add(conn)  # committed (not a savepoint inside a caller's transaction)


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


def write_status_batch(
    conn: psycopg.Connection[Any], history: Sequence[Any], availability: Sequence[Any]
) -> None:
    """Insert status history rows and upsert availability rows in one transaction."""
    current = _last_per_key(availability, lambda a: (a.charge_point_id, a.connector_id))
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


def station_sites(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, int | None]]:
    """charge point id -> (site_id, sites.capacity_w) for every station on a site."""
    rows = conn.execute(
        "SELECT st.charge_point_id, st.site_id, si.capacity_w FROM stations st"
        " JOIN sites si ON si.site_id = st.site_id"
    ).fetchall()
    return {cp: (site, None if cap is None else int(cap)) for cp, site, cap in rows}
