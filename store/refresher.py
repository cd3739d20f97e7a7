"""The aggregates refresher: ``python -m store.aggregates [--every SECONDS | --once]
[--force]`` (database from CHARGEFLOW_DATABASE_URL) refreshes the load aggregates'
invalidated buckets (:func:`store.aggregates.refresh_aggregates`) on a schedule, serves
``/livez``, ``/readyz`` (a refresh succeeded within three ticks and 30 s) and
``/metrics`` on CHARGEFLOW_AGGREGATES_HTTP_PORT, and stops cleanly on SIGINT/SIGTERM.
``chargeflow run`` starts it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import psycopg
from pydantic import Field

from runtime.logs import configure_logging
from runtime.settings import DatabaseSettings, LoggingSettings, OptionalPort, SettingsError
from store.aggregates import AGGREGATE_VIEWS, refresh_aggregates

log = logging.getLogger("chargeflow.aggregates")


class AggregatesSettings(DatabaseSettings, LoggingSettings):
    """Settings of the refresher: the database to refresh, how to log and where its
    health endpoint listens; the schedule is its command line."""

    aggregates_http_host: str = Field(
        "127.0.0.1", description="address of the refresher's /livez, /readyz and /metrics"
    )
    aggregates_http_port: OptionalPort = Field(
        9105,
        description="port of the refresher's /livez, /readyz (a refresh succeeded lately) "
        "and /metrics (0 = a free one, off = none)",
    )


class RefreshProgress:
    """When the loop last refreshed without error (monotonic seconds): the readiness of
    the refresher, ready once a refresh succeeded within ``max_age_s``."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.last_ok: float | None = None

    def refreshed(self) -> None:
        self.last_ok = time.monotonic()

    def recent(self) -> bool:
        return self.last_ok is not None and time.monotonic() - self.last_ok <= self.max_age_s


def refresh_loop(
    database_url: str,
    every_s: float,
    stop: threading.Event,
    *,
    force: bool = False,
    progress: RefreshProgress | None = None,
) -> None:
    """Refresh every ``every_s`` seconds until ``stop`` is set; database outages are
    logged and retried at the next tick; each refresh that succeeds is told ``progress``."""
    conn: psycopg.Connection[Any] | None = None
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        database_url,
                        autocommit=True,
                        connect_timeout=5,
                        application_name="chargeflow-aggregates",
                    )
                done = refresh_aggregates(conn, force=force)
                if progress is not None:
                    progress.refreshed()
                if done:
                    log.debug("refreshed %s in %.2fs", ", ".join(done), time.monotonic() - started)
            except psycopg.OperationalError as exc:
                log.warning(
                    "aggregate refresh failed (%s); retrying in %.0fs",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    every_s,
                )
                if conn is not None:
                    conn.close()
                conn = None
            stop.wait(every_s)  # the schedule, not synchronisation
    finally:
        if conn is not None:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m store.aggregates",
        description="Refresh the load aggregates' invalidated buckets (docs/storage.md).",
    )
    parser.add_argument("--every", type=float, default=60.0, help="seconds between refreshes")
    parser.add_argument("--once", action="store_true", help="refresh once and exit")
    parser.add_argument(
        "--force", action="store_true", help="refresh every bucket within raw-data retention"
    )
    args = parser.parse_args(argv)
    try:
        settings = AggregatesSettings.load()
        configure_logging(settings.log_level, settings.log_format)
        url = settings.require("database_url")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.once:
        with psycopg.connect(url, autocommit=True) as conn:
            done = refresh_aggregates(conn, force=args.force)
        print("refreshed: " + (", ".join(done) or "nothing to refresh"))
        return 0
    if args.every <= 0:
        print("error: --every must be > 0", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "refreshing invalidated buckets of %s every %.0fs", ", ".join(AGGREGATE_VIEWS), args.every
    )
    # Ready while refreshes succeed: one missed tick (an outage, a long refresh) is not yet
    # a problem, three are.
    progress = RefreshProgress(max_age_s=3 * args.every + 30)
    health = _health(settings, progress)
    try:
        refresh_loop(url, args.every, stop, force=args.force, progress=progress)
    finally:
        if health is not None:
            health.stop()
    return 0


def _health(settings: AggregatesSettings, progress: RefreshProgress) -> Any:
    """/livez, /readyz and /metrics on their own thread (None when the port is off)."""
    if settings.aggregates_http_port is None:
        return None
    from runtime.health import HealthServer  # the web server only for the command

    health = HealthServer(
        host=settings.aggregates_http_host, port=settings.aggregates_http_port, name="aggregates"
    )
    health.add_check("refreshing", progress.recent)
    port = health.start_in_thread()
    log.info("health and metrics on http://%s:%d", settings.aggregates_http_host, port)
    return health
