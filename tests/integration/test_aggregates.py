"""store.aggregates against the real database: late rows written by the real writer
reach every aggregate, the current hour is never frozen, and aggregates outlive the
raw rows that retention drops."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from flows.load.logic import MinuteRow
from store.aggregates import RAW_RETENTION, floor_bucket, refresh_aggregates
from store.load import write_load_batch
from tests.support.database import clear_data

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)

# Independent of store.aggregates: per connector and hour / UTC day, straight from the
# raw rows (the same figures the load API serves).
HOURS = """
SELECT charge_point_id, connector_id, date_trunc('hour', bucket AT TIME ZONE 'UTC'),
       count(*), sum(sample_count), sum(energy_wh)
FROM load_connector_1m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
DAYS = """
SELECT charge_point_id, connector_id, date_trunc('day', bucket AT TIME ZONE 'UTC'),
       count(*), sum(sample_count), sum(energy_wh)
FROM load_connector_1m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
HOURS_AGGREGATE = """
SELECT charge_point_id, connector_id, bucket AT TIME ZONE 'UTC', minutes, sample_count,
       energy_wh FROM load_connector_1h ORDER BY 1, 2, 3"""
DAYS_AGGREGATE = """
SELECT charge_point_id, connector_id, bucket AT TIME ZONE 'UTC', minutes, sample_count,
       energy_wh FROM energy_connector_1d ORDER BY 1, 2, 3"""
STATION_MINUTES = (
    "SELECT charge_point_id, bucket, sample_count, energy_wh FROM load_station_1m ORDER BY 1, 2"
)


def minute(cp: str, at: datetime, energy_wh: int, connector_id: int = 1) -> MinuteRow:
    return MinuteRow(
        charge_point_id=cp,
        connector_id=connector_id,
        bucket=at,
        sample_count=2,
        power_sum_w=14_000.0,
        avg_power_w=7_000.0,
        max_power_w=7_100.0,
        energy_wh=Decimal(energy_wh),
        register_wh=None,
        source="ocpp",
    )


def series(cp: str, start: datetime, count: int, energy_wh: int = 100) -> list[MinuteRow]:
    return [minute(cp, start + k * M, energy_wh + k) for k in range(count)]


def db_now(db: psycopg.Connection[Any]) -> datetime:
    row = db.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def rows(db: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return db.execute(sql).fetchall()


def test_late_rows_reach_the_hour_and_day_aggregates(db: psycopg.Connection[Any]) -> None:
    now = db_now(db)
    hour = floor_bucket(now, H)
    write_load_batch(db, series("CP-LIVE", hour - 2 * H, 30), [])
    # (On TimescaleDB the day is still the current bucket, left to the real-time part.)
    assert "load_connector_1h" in refresh_aggregates(db)
    assert rows(db, HOURS_AGGREGATE) == rows(db, HOURS)
    # A station back after 10 days offline sends its buffered readings: far older than
    # any refresh policy looks back (2 days for hours, 7 for days).
    late_start = floor_bucket(now - 10 * D, D) + 9 * H + 15 * M
    write_load_batch(db, series("CP-LATE", late_start, 90), [])
    refresh_aggregates(db)
    assert rows(db, HOURS_AGGREGATE) == rows(db, HOURS)
    assert rows(db, DAYS_AGGREGATE) == rows(db, DAYS)
    late_hours = [r for r in rows(db, HOURS_AGGREGATE) if r[0] == "CP-LATE"]
    assert [(r[3], r[5]) for r in late_hours] == [
        (45, sum(Decimal(100 + k) for k in range(45))),
        (45, sum(Decimal(100 + k) for k in range(45, 90))),
    ]
    late_minutes = [r for r in rows(db, STATION_MINUTES) if r[0] == "CP-LATE"]
    assert [(r[1], r[3]) for r in late_minutes] == [
        (late_start + k * M, Decimal(100 + k)) for k in range(90)
    ]

    # A forced refresh, then rows of the current hour: the next refresh shows them (the
    # current hour and day are not frozen by the forced one).
    refresh_aggregates(db, force=True)
    write_load_batch(db, [minute("CP-LIVE", hour + 5 * M, 777)], [])
    refresh_aggregates(db)
    assert rows(db, HOURS_AGGREGATE) == rows(db, HOURS)
    assert rows(db, DAYS_AGGREGATE) == rows(db, DAYS)
    current = db.execute(
        "SELECT energy_wh FROM load_connector_1h WHERE charge_point_id = 'CP-LIVE' AND bucket = %s",
        (hour,),
    ).fetchone()
    assert current == (Decimal(777),)
    # Nothing left to do: the ranges taken were deleted.
    assert refresh_aggregates(db) == []
    assert rows(db, "SELECT count(*) FROM load_aggregate_invalidations") == [(0,)]


def test_replayed_rows_invalidate_nothing(db: psycopg.Connection[Any]) -> None:
    now = db_now(db)
    batch = series("CP-A", floor_bucket(now - 5 * D, H), 3) + series("CP-B", now - 3 * D, 2)
    write_load_batch(db, batch, [])
    recorded = rows(
        db, "SELECT bucket_start, bucket_end FROM load_aggregate_invalidations ORDER BY 1"
    )
    assert recorded == sorted(
        {(floor_bucket(r.bucket, H), floor_bucket(r.bucket, H) + H) for r in batch}
    )
    refresh_aggregates(db)
    write_load_batch(db, batch, [])  # a replay changes no row
    assert rows(db, "SELECT count(*) FROM load_aggregate_invalidations") == [(0,)]


def test_aggregates_outlive_their_raw_rows(db: psycopg.Connection[Any]) -> None:
    """Rows of a day 100 days back, aggregated while they were young (the refresher run
    with that day's clock); retention then deletes the raw rows, and a forced refresh
    keeps the day's hour and day aggregates (kept 2 years and forever)."""
    now = db_now(db)
    old_day = floor_bucket(now - 100 * D, D)
    write_load_batch(db, series("CP-OLD", old_day + 10 * H, 120), [])
    recent_day = floor_bucket(now - 5 * D, D)
    write_load_batch(db, series("CP-NEW", recent_day + 8 * H, 60), [])
    refresh_aggregates(db, now=old_day + 13 * H)  # that day's refresher
    refresh_aggregates(db, force=True)  # today's, raw rows complete
    hours, days = rows(db, HOURS_AGGREGATE), rows(db, DAYS_AGGREGATE)
    assert [(r[0], r[3]) for r in hours] == [("CP-NEW", 60), ("CP-OLD", 60), ("CP-OLD", 60)]
    assert [(r[0], r[3]) for r in days] == [("CP-NEW", 60), ("CP-OLD", 120)]
    assert hours == rows(db, HOURS)

    # What the retention policy does to the raw table (TimescaleDB drops the chunks).
    deleted = db.execute(
        "DELETE FROM load_connector_1m WHERE bucket < now() - %s", (RAW_RETENTION,)
    ).rowcount
    assert deleted == 120
    assert refresh_aggregates(db, force=True) == [
        "load_station_1m",
        "load_connector_1h",
        "energy_connector_1d",
    ]
    assert rows(db, HOURS_AGGREGATE) == hours
    assert rows(db, DAYS_AGGREGATE) == days

    # Within retention the aggregates follow the raw rows, deletions included.
    db.execute(
        "DELETE FROM load_connector_1m WHERE charge_point_id = 'CP-NEW' AND bucket >= %s",
        (recent_day + 8 * H + 30 * M,),
    )
    refresh_aggregates(db, force=True)
    assert [(r[0], r[3]) for r in rows(db, HOURS_AGGREGATE)] == [
        ("CP-NEW", 30),
        ("CP-OLD", 60),
        ("CP-OLD", 60),
    ]
    assert [(r[0], r[3]) for r in rows(db, DAYS_AGGREGATE)] == [("CP-NEW", 30), ("CP-OLD", 120)]


def test_cleaning_the_database_clears_the_aggregates(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    write_load_batch(db, series("CP-A", floor_bucket(db_now(db) - 2 * D, H), 5), [])
    refresh_aggregates(db)
    write_load_batch(db, series("CP-A", floor_bucket(db_now(db) - 4 * D, H), 5), [])
    clear_data(clean_db)
    for table in (
        "load_station_1m",
        "load_connector_1h",
        "energy_connector_1d",
        "load_aggregate_invalidations",
    ):
        assert rows(db, f"SELECT count(*) FROM {table}") == [(0,)], table
