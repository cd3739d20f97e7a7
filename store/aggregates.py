"""Keeping the load aggregates fresh (``load_station_1m``, ``load_connector_1h``,
``energy_connector_1d``; see migration 0006).

* TimescaleDB: they are continuous aggregates with refresh policies and real-time
  aggregation; nothing to do here (``force=True`` refreshes them fully, e.g. after
  a backfill).
* Plain PostgreSQL: they are materialised views; :func:`refresh_aggregates` runs
  ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` on each (readers are never blocked).
  A session-level advisory lock makes concurrent refreshers (several copies of the
  loop) skip rather than queue up.

``python -m store.aggregates [--every SECONDS | --once] [--force]`` (database from
CHARGEFLOW_DATABASE_URL) is the small scheduler ``chargeflow run`` starts; it stops
cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import psycopg

from runtime.logs import configure_logging

log = logging.getLogger("chargeflow.aggregates")

AGGREGATE_VIEWS = ("load_station_1m", "load_connector_1h", "energy_connector_1d")
REFRESH_LOCK_KEY = 0x6366_6167  # "cfag": one refresher at a time per database


def _mode(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'").fetchone()
    if row is None:
        raise RuntimeError("schema is not migrated: chargeflow_meta.storage_mode is missing")
    return str(row[0])


def refresh_aggregates(conn: psycopg.Connection[Any], *, force: bool = False) -> list[str]:
    """Refresh what needs refreshing; returns the views refreshed (``conn`` must be in
    autocommit mode: neither statement may run inside a transaction block)."""
    if not conn.autocommit:
        raise ValueError("refresh_aggregates needs an autocommit connection")
    if _mode(conn) == "timescaledb":
        if not force:
            return []
        for view in AGGREGATE_VIEWS:
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        return list(AGGREGATE_VIEWS)
    locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (REFRESH_LOCK_KEY,)).fetchone()
    if not locked or not locked[0]:
        return []  # another refresher is at it
    try:
        for view in AGGREGATE_VIEWS:
            conn.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (REFRESH_LOCK_KEY,))
    return list(AGGREGATE_VIEWS)


def refresh_loop(database_url: str, every_s: float, stop: threading.Event, *,
                 force: bool = False) -> None:
    """Refresh every ``every_s`` seconds until ``stop`` is set; database outages are
    logged and retried at the next tick."""
    conn: psycopg.Connection[Any] | None = None
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(database_url, autocommit=True, connect_timeout=5,
                                           application_name="chargeflow-aggregates")
                done = refresh_aggregates(conn, force=force)
                if done:
                    log.debug("refreshed %s in %.2fs", ", ".join(done),
                              time.monotonic() - started)
            except psycopg.OperationalError as exc:
                log.warning("aggregate refresh failed (%s); retrying in %.0fs",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                            every_s)
                if conn is not None:
                    conn.close()
                conn = None
            stop.wait(every_s)  # the schedule, not synchronisation
    finally:
        if conn is not None:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store.aggregates",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=60.0, help="seconds between refreshes")
    parser.add_argument("--once", action="store_true", help="refresh once and exit")
    parser.add_argument("--force", action="store_true",
                        help="TimescaleDB: refresh the continuous aggregates fully")
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("CHARGEFLOW_LOG_LEVEL", "INFO"),
                      os.environ.get("CHARGEFLOW_LOG_FORMAT", "console"))
    url = os.environ.get("CHARGEFLOW_DATABASE_URL")
    if not url:
        print("error: CHARGEFLOW_DATABASE_URL is not set", file=sys.stderr)
        return 2
    if args.once:
        with psycopg.connect(url, autocommit=True) as conn:
            done = refresh_aggregates(conn, force=args.force)
        print("refreshed: " + (", ".join(done) or "nothing (TimescaleDB policies do it)"))
        return 0
    if args.every <= 0:
        print("error: --every must be > 0", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with psycopg.connect(url, autocommit=True) as conn:
        mode = _mode(conn)
    if mode == "timescaledb" and not args.force:
        log.info("TimescaleDB: continuous aggregate policies refresh the load aggregates")
    else:
        log.info("refreshing %s every %.0fs", ", ".join(AGGREGATE_VIEWS), args.every)
    refresh_loop(url, args.every, stop, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
