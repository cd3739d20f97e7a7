"""Load aggregate refresh benchmark: ``python -m bench.aggregates [--connectors N ...]``.

On a fresh database (CHARGEFLOW_BENCH_DATABASE_URL names a server to use, else
127.0.0.1:5432, else embedded PostgreSQL) measures

* ``write``: ``store.load.write_load_batch`` of ``--connectors`` x ``--minutes``
  minute rows ending now, in batches of ``--batch`` rows (binary COPY, upsert and the
  invalidation rows of the same statement), rows/s and invalidation rows recorded;
* ``refresh_recent``: the refresher's tick after those writes (the invalidated hours
  of every aggregate), wall time;
* ``refresh_late``: the same rows 10 days old written again, then one tick;
* ``refresh_forced``: ``force=True`` (every bucket within raw retention).

Prints one JSON document to stdout; nothing asserts timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.common import fresh_database, machine_info
from chargeflow.stack import database_server
from flows.load.logic import MinuteRow
from store.aggregates import floor_bucket, refresh_aggregates
from store.load import write_load_batch


def _rows(connectors: int, minutes: int, end: Any) -> list[MinuteRow]:
    start = floor_bucket(end, timedelta(minutes=1)) - minutes * timedelta(minutes=1)
    return [
        MinuteRow(
            charge_point_id=f"CP-{c // 2:05d}",
            connector_id=c % 2 + 1,
            bucket=start + m * timedelta(minutes=1),
            sample_count=4,
            power_sum_w=28_000.0,
            avg_power_w=7_000.0,
            max_power_w=7_400.0,
            energy_wh=Decimal(116),
            register_wh=Decimal(1000 + m),
            source="ocpp",
        )
        for m in range(minutes)
        for c in range(connectors)
    ]


def _write(db: psycopg.Connection[Any], rows: list[MinuteRow], batch: int) -> dict[str, Any]:
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        write_load_batch(db, rows[i : i + batch], [])
    wall = time.perf_counter() - started
    recorded = db.execute("SELECT count(*) FROM load_aggregate_invalidations").fetchone()
    return {
        "rows": len(rows),
        "wall_s": round(wall, 3),
        "rows_per_s": round(len(rows) / wall),
        "invalidation_rows": None if recorded is None else recorded[0],
    }


def _refresh(db: psycopg.Connection[Any], *, force: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    done = refresh_aggregates(db, force=force)
    return {"wall_s": round(time.perf_counter() - started, 3), "refreshed": done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aggregates")
    parser.add_argument("--connectors", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "connectors": args.connectors,
        "minutes": args.minutes,
        "batch": args.batch,
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = database_server(os.environ.get("CHARGEFLOW_BENCH_DATABASE_URL"), Path(tmp))
        try:
            with fresh_database(server) as url, psycopg.connect(url, autocommit=True) as db:
                row = db.execute("SELECT now()").fetchone()
                assert row is not None
                now = row[0]
                result["write"] = _write(db, _rows(args.connectors, args.minutes, now), args.batch)
                result["refresh_recent"] = _refresh(db)
                late = _rows(args.connectors, args.minutes, now - timedelta(days=10))
                result["write_late"] = _write(db, late, args.batch)
                result["refresh_late"] = _refresh(db)
                result["refresh_forced"] = _refresh(db, force=True)
        finally:
            server.stop()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
