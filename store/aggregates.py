"""Keeping the load aggregates (``load_station_1m``, ``load_connector_1h``,
``energy_connector_1d``) true to ``load_connector_1m``; docs/storage.md has the rules.

Both storage modes:

* ``store.load`` records the UTC hours each batch inserted or changed in
  ``load_aggregate_invalidations`` (same transaction as the rows). A refresh takes
  those ranges, widens each to whole buckets of every aggregate and refreshes exactly
  those buckets, then deletes the ranges it took. Late rows (a station's buffered
  offline data, days old) therefore reach every aggregate on the next refresh.
* No refresh window starts before :func:`earliest_bucket`: raw retention
  (:data:`RAW_RETENTION`, the ``load_connector_1m`` retention policy of TimescaleDB)
  less :data:`RETENTION_MARGIN`, rounded up to a whole bucket. Refreshing a bucket
  whose raw rows are gone would delete it from the aggregate, whose own retention is
  longer (2 years, forever).
* ``force`` refreshes every bucket from that start on (e.g. after a bulk load that
  bypassed the writer).

TimescaleDB: continuous aggregates (real-time; their policies refresh the last 2 h,
2 days and 7 days). The refresh is ``CALL refresh_continuous_aggregate`` per window,
ending at the start of the current bucket: the current hour and day are never
materialised (that would freeze them until the next policy run past them); the
real-time part of the aggregate shows them.

Plain PostgreSQL: the aggregates are tables. A window is refreshed in one statement:
the buckets recomputed from the raw rows are upserted (rows that did not change are
not rewritten) and the window's buckets without raw rows are deleted; nothing outside
the window is touched. The current bucket is refreshed too (there is no real-time
part), so aggregates are as fresh as the last refresh. All windows and the deletion of
the ranges taken run in one transaction.

A session-level advisory lock makes concurrent refreshers (several copies of the loop)
skip rather than queue up.

``python -m store.aggregates [--every SECONDS | --once] [--force]`` runs the scheduler
(:mod:`store.refresher`) that ``chargeflow run`` starts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger("chargeflow.aggregates")


REFRESH_LOCK_KEY = 0x6366_6167  # "cfag": one refresher at a time per database
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin origin of the plain tables
RAW_RETENTION = timedelta(days=90)  # load_connector_1m, TimescaleDB retention policy
# Raw rows younger than RAW_RETENTION are always there (TimescaleDB drops whole 1-day
# chunks once all of a chunk is older); the margin keeps a refresh clear of a chunk
# being dropped while it runs.
RETENTION_MARGIN = timedelta(days=1)
INVALIDATIONS_PER_REFRESH = 50_000


@dataclass(frozen=True, slots=True)
class Aggregate:
    name: str
    width: timedelta
    keys: tuple[str, ...]
    measures: tuple[tuple[str, str], ...]  # (column, expression over load_connector_1m)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, "bucket", *(c for c, _ in self.measures))


_CONNECTOR_MEASURES = (
    ("minutes", "count(*)::int"),
    ("sample_count", "sum(sample_count)::int"),
    ("avg_power_w", "sum(power_sum_w) / NULLIF(sum(sample_count), 0)"),
    ("max_power_w", "max(max_power_w)"),
    ("energy_wh", "sum(energy_wh)"),
)
AGGREGATES: tuple[Aggregate, ...] = (
    Aggregate(
        "load_station_1m",
        timedelta(minutes=1),
        ("charge_point_id",),
        (
            ("connector_count", "count(*)::int"),
            ("sample_count", "sum(sample_count)::int"),
            ("avg_power_w", "sum(avg_power_w)"),
            ("max_connector_power_w", "max(max_power_w)"),
            ("energy_wh", "sum(energy_wh)"),
        ),
    ),
    Aggregate(
        "load_connector_1h",
        timedelta(hours=1),
        ("charge_point_id", "connector_id"),
        _CONNECTOR_MEASURES,
    ),
    Aggregate(
        "energy_connector_1d",
        timedelta(days=1),
        ("charge_point_id", "connector_id"),
        _CONNECTOR_MEASURES,
    ),
)
AGGREGATE_VIEWS = tuple(a.name for a in AGGREGATES)


@dataclass(frozen=True, slots=True)
class RefreshWindow:
    """Buckets ``[start, end)`` of one aggregate; ``end`` None: no upper bound."""

    aggregate: Aggregate
    start: datetime
    end: datetime | None


# -- pure planning ------------------------------------------------------------------


def floor_bucket(at: datetime, width: timedelta) -> datetime:
    return at - (at - ORIGIN) % width


def ceil_bucket(at: datetime, width: timedelta) -> datetime:
    start = floor_bucket(at, width)
    return start if start == at else start + width


def earliest_bucket(now: datetime, width: timedelta) -> datetime:
    """The first bucket a refresh may touch: all of it lies within raw retention."""
    return ceil_bucket(now - RAW_RETENTION + RETENTION_MARGIN, width)


def _merge(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def refresh_windows(
    *,
    timescale: bool,
    now: datetime,
    invalidated: Sequence[tuple[datetime, datetime]],
    force: bool = False,
) -> list[RefreshWindow]:
    """What to refresh for the ranges of raw time ``invalidated`` (and everything within
    retention with ``force``), per aggregate in :data:`AGGREGATES` order."""
    windows: list[RefreshWindow] = []
    for aggregate in AGGREGATES:
        width = aggregate.width
        earliest = earliest_bucket(now, width)
        # TimescaleDB: the current bucket (and anything later) is the real-time part.
        latest = floor_bucket(now, width) if timescale else None
        if force:
            if latest is None or latest > earliest:
                windows.append(RefreshWindow(aggregate, earliest, latest))
            continue
        ranges = []
        for low, high in invalidated:
            start = max(floor_bucket(low, width), earliest)
            end = ceil_bucket(high, width)
            if latest is not None:
                end = min(end, latest)
            if end > start:
                ranges.append((start, end))
        windows.extend(RefreshWindow(aggregate, s, e) for s, e in _merge(ranges))
    return windows


def timescale_refresh_sql(window: RefreshWindow) -> str:
    """The TimescaleDB statement for ``window`` (checked by tests/unit/test_timescale_sql.py)."""
    if window.end is None:
        raise ValueError("a TimescaleDB refresh window needs an end")
    if window.aggregate not in AGGREGATES:
        raise ValueError(f"not a load aggregate: {window.aggregate.name!r}")
    return (
        f"CALL refresh_continuous_aggregate('{window.aggregate.name}', "
        f"TIMESTAMPTZ '{window.start.astimezone(UTC).isoformat()}', "
        f"TIMESTAMPTZ '{window.end.astimezone(UTC).isoformat()}')"
    )


def plain_select_sql(aggregate: Aggregate) -> str:
    """The aggregate's rows over ``load_connector_1m`` rows in ``[%(start)s, %(end)s)``."""
    bucket = (
        f"date_bin(INTERVAL '{aggregate.width.total_seconds():.0f} seconds', bucket, "
        f"TIMESTAMPTZ '{ORIGIN.isoformat()}')"
    )
    keys = ", ".join(aggregate.keys)
    measures = ", ".join(f"{expression} AS {column}" for column, expression in aggregate.measures)
    return (
        f"SELECT {keys}, {bucket} AS bucket, {measures} FROM load_connector_1m"
        " WHERE bucket >= %(start)s"
        " AND bucket < COALESCE(%(end)s::timestamptz, 'infinity')"
        f" GROUP BY {keys}, {bucket}"
    )


def plain_refresh_sql(aggregate: Aggregate) -> str:
    """One statement: upsert the window's recomputed buckets, delete its buckets that
    have no raw rows; rows outside ``[%(start)s, %(end)s)`` are not touched."""
    name = aggregate.name
    key = ", ".join((*aggregate.keys, "bucket"))
    measures = [c for c, _ in aggregate.measures]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in measures)
    old = ", ".join(f"a.{c}" for c in measures)
    new = ", ".join(f"EXCLUDED.{c}" for c in measures)
    same_key = " AND ".join(f"f.{c} = a.{c}" for c in (*aggregate.keys, "bucket"))
    columns = ", ".join(aggregate.columns)
    return (
        f"WITH fresh AS ({plain_select_sql(aggregate)}), "
        f"upserted AS (INSERT INTO {name} AS a ({columns}) SELECT {columns} FROM fresh"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
        f" WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING 1) "
        f"DELETE FROM {name} AS a WHERE a.bucket >= %(start)s"
        " AND a.bucket < COALESCE(%(end)s::timestamptz, 'infinity')"
        f" AND NOT EXISTS (SELECT 1 FROM fresh f WHERE {same_key})"
    )


# -- database -----------------------------------------------------------------------


def _mode(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'").fetchone()
    if row is None:
        raise RuntimeError("schema is not migrated: chargeflow_meta.storage_mode is missing")
    return str(row[0])


def refresh_aggregates(
    conn: psycopg.Connection[Any], *, force: bool = False, now: datetime | None = None
) -> list[str]:
    """Refresh the buckets invalidated since the last refresh (all buckets within
    retention with ``force``); returns the aggregates refreshed. ``now`` (default: the
    database's clock) fixes the retention clamp and, on TimescaleDB, the current
    bucket. ``conn`` must be in autocommit mode (TimescaleDB's refresh cannot run in a
    transaction block)."""
    if not conn.autocommit:
        raise ValueError("refresh_aggregates needs an autocommit connection")
    timescale = _mode(conn) == "timescaledb"
    locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (REFRESH_LOCK_KEY,)).fetchone()
    if not locked or not locked[0]:
        return []  # another refresher is at it
    try:
        if now is None:
            clock = conn.execute("SELECT now()").fetchone()
            assert clock is not None
            now = clock[0]
        assert now is not None
        rows = conn.execute(
            "SELECT id, bucket_start, bucket_end FROM load_aggregate_invalidations"
            " ORDER BY id LIMIT %s",
            (INVALIDATIONS_PER_REFRESH,),
        ).fetchall()
        ids = [r[0] for r in rows]
        windows = refresh_windows(
            timescale=timescale, now=now, invalidated=[(r[1], r[2]) for r in rows], force=force
        )
        if timescale:
            for window in windows:
                conn.execute(timescale_refresh_sql(window))
            _forget(conn, ids)
        else:
            with conn.transaction():
                for window in windows:
                    conn.execute(
                        plain_refresh_sql(window.aggregate),
                        {"start": window.start, "end": window.end},
                    )
                _forget(conn, ids)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (REFRESH_LOCK_KEY,))
    return list(dict.fromkeys(w.aggregate.name for w in windows))


def _forget(conn: psycopg.Connection[Any], ids: list[int]) -> None:
    if ids:
        conn.execute("DELETE FROM load_aggregate_invalidations WHERE id = ANY(%s)", (ids,))


if __name__ == "__main__":
    from store.refresher import main

    sys.exit(main())
