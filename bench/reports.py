"""Usage report benchmark: ``python -m bench.reports [--stations N] [--days D]``.

On a fresh database (CHARGEFLOW_BENCH_DATABASE_URL names a server to use, else
127.0.0.1:5432, else embedded PostgreSQL), one site of ``--stations`` stations with two
connectors each; per connector and day ``--sessions-per-day`` sessions, each with five
status changes (Preparing, Charging, SuspendedEV, Finishing, Available), COPYed in.
Then the report over the whole span, timed step by step as the API runs them:

* ``read``: ``store.reports.usage_inputs`` (one repeatable-read snapshot);
* ``compute``: ``reports.usage.usage_report`` (pure);
* ``json``: ``UsageReportPublic`` and its JSON; ``csv``: ``usage_csv``;
* ``html``: ``render_usage`` (three matplotlib SVG charts and the table), and its size.

Prints one JSON document to stdout; nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.routers.reports import usage_csv
from api.schemas.reports import UsageReportPublic
from bench.common import fresh_database, machine_info
from chargeflow.stack import database_server
from reports.html import render_usage
from reports.usage import usage_report
from store import reports as report_store

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
SITE = "BENCH-SITE"


def _seed(url: str, stations: int, days: int, per_day: int) -> dict[str, int]:
    sessions = statuses = 0
    gap = timedelta(hours=24) / per_day
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO sites (site_id, name, time_zone) VALUES (%s, %s, %s)",
                   (SITE, SITE, "Europe/Berlin"))  # fmt: skip
        with db.cursor() as cur:
            for s in range(stations):
                cp = f"BENCH-{s:05d}"
                cur.execute(
                    "INSERT INTO stations (charge_point_id, site_id) VALUES (%s, %s)", (cp, SITE)
                )
                cur.executemany(
                    "INSERT INTO connectors (charge_point_id, connector_id) VALUES (%s, %s)",
                    [(cp, 1), (cp, 2)],
                )
        with (
            db.cursor() as cur,
            cur.copy(
                "COPY connector_status_history (charge_point_id, connector_id, at, status,"
                " ocpp_status, error_code) FROM STDIN"
            ) as status_copy,
        ):
            for s in range(stations):
                for connector in (1, 2):
                    for k in range(days * per_day):
                        at = START + gap * k + timedelta(minutes=7 * connector)
                        for offset, status in (
                            (0, "Preparing"),
                            (5, "Charging"),
                            (95, "SuspendedEV"),
                            (110, "Finishing"),
                            (120, "Available"),
                        ):
                            status_copy.write_row(
                                (f"BENCH-{s:05d}", connector, at + timedelta(minutes=offset),
                                 status, status, "NoError")
                            )  # fmt: skip
                            statuses += 1
        with (
            db.cursor() as cur,
            cur.copy(
                "COPY sessions (session_id, charge_point_id, connector_id, transaction_id,"
                " status, started_at, stopped_at, meter_start_wh, meter_stop_wh, energy_wh)"
                " FROM STDIN"
            ) as session_copy,
        ):
            for s in range(stations):
                for connector in (1, 2):
                    register = 0
                    for k in range(days * per_day):
                        at = START + gap * k + timedelta(minutes=7 * connector + 5)
                        session_copy.write_row(
                            (uuid.uuid4(), f"BENCH-{s:05d}", connector, f"{connector}-{k}",
                             "closed", at, at + timedelta(minutes=110), register,
                             register + 16_500, 16_500)
                        )  # fmt: skip
                        register += 16_500
                        sessions += 1
    return {"stations": stations, "connectors": 2 * stations, "sessions": sessions,
            "status_rows": statuses}  # fmt: skip


async def _report(url: str, days: int) -> dict[str, Any]:
    end = START + timedelta(days=days)
    timings: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        inputs = await report_store.usage_inputs(
            conn, start=START, end=end, observed_until=end, site_id=SITE,
            time_zone="Europe/Berlin",
        )  # fmt: skip
        timings["read_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    report = usage_report(inputs)
    timings["compute_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    body = UsageReportPublic.of(report).model_dump_json(by_alias=True)
    timings["json_s"] = round(time.perf_counter() - t, 3)
    timings["json_bytes"] = len(body)
    t = time.perf_counter()
    csv_text = usage_csv(report)
    timings["csv_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    page = render_usage(report)
    timings["html_s"] = round(time.perf_counter() - t, 3)
    timings["html_bytes"] = len(page)
    timings["csv_bytes"] = len(csv_text)
    timings["utilisation"] = str(report.totals.utilisation)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports")
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--sessions-per-day", type=int, default=6)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        server = database_server(os.environ.get("CHARGEFLOW_BENCH_DATABASE_URL"), Path(tmp))
        try:
            with fresh_database(server) as url:
                t = time.perf_counter()
                result["data"] = _seed(url, args.stations, args.days, args.sessions_per_day)
                result["data"]["seed_s"] = round(time.perf_counter() - t, 1)
                result["report"] = asyncio.run(_report(url, args.days))
        finally:
            server.stop()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
