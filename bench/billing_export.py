"""CDR export benchmark: ``python -m bench.billing_export [--cdrs N]``.

On a fresh database (CHARGEFLOW_BENCH_DATABASE_URL names a server to use, else
127.0.0.1:5432, else embedded PostgreSQL):

* ``load``: ``--cdrs`` CDRs (1,000,000 by default) priced by the real billing code from
  a few sessions and varied (id, session, start, station, customer), COPYed into
  ``cdrs`` with their full JSON bodies; rows/s;
* ``export``: ``GET /v1/cdrs/export.csv`` of all of them from the real API (``python -m
  api`` in a subprocess, a billing key), streamed by httpx to nothing: rows, bytes,
  wall time, rows/s, and the API process's resident memory: before the request, the
  highest sampled during it (every 20 ms, psutil) and the kernel's peak (``VmHWM``,
  start-up included). Target: peak RSS <= 200 MB, whatever ``--cdrs``.

Prints one JSON document to stdout; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from bench.common import fresh_database, machine_info
from billing.cdrs import CdrLocation, CdrParty, build_cdr, cdr_id
from billing.cost import price_session
from billing.metered import usage_from_samples
from billing.priced import ocpi_datetime
from billing.tariffs import parse_tariff
from bus.sessions import EnergySource, Quality, SessionClosed
from chargeflow.stack import database_server, free_port, tcp_open
from store.api_keys import create_api_key
from store.cdrs import INSERT_COLUMNS, cdr_row

START = datetime(2026, 1, 1, tzinfo=UTC)
TARIFF = parse_tariff(
    {
        "country_code": "NL",
        "party_id": "CFL",
        "id": "BENCH",
        "currency": "EUR",
        "last_updated": "2026-01-01T00:00:00Z",
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.3333", "vat": 21, "step_size": 1},
                    {"type": "FLAT", "price": "0.35", "vat": 21, "step_size": 1},
                ]
            }
        ],
    }
)
MB = 1024 * 1024


def _templates() -> list[dict[str, Any]]:
    """Real CDRs of sessions of 1-40 kWh (their bodies, ~1.5 kB each)."""
    out = []
    for k in range(16):
        energy = 1_000 + k * 2_500
        started = START + timedelta(hours=k)
        stopped = started + timedelta(minutes=20 + 10 * k)
        session = SessionClosed(
            message_id="m",
            session_id=str(uuid.uuid4()),
            charge_point_id="CP",
            connector_id=1,
            transaction_id="1",
            started_at=started,
            stopped_at=stopped,
            closed_at=stopped,
            energy_wh=energy,
            energy_source=EnergySource.STATION_REGISTER,
            quality=Quality.EXACT,
            id_tag="TAG",
            meter_start_wh=0,
            meter_stop_wh=energy,
        )
        usage = usage_from_samples(
            started_at=started,
            stopped_at=stopped,
            meter_start_wh=0,
            meter_stop_wh=energy,
            energy_wh=energy,
            samples=[],
            time_zone="Europe/Amsterdam",
        )
        location = CdrLocation(id="SITE", evse_uid="CP*1", evse_id="NL*CFL*E1", connector_id="1")
        out.append(
            build_cdr(
                session,
                price_session(TARIFF, usage),
                party=CdrParty("NL", "CFL"),
                location=location,
                last_updated=stopped,
            )
        )
    return out


def _rows(count: int) -> Iterator[tuple[Any, ...]]:
    templates = _templates()
    for i in range(count):
        template = templates[i % len(templates)]
        session_id = str(uuid.UUID(int=i + 1))
        started = START + timedelta(seconds=30 * i)
        duration = datetime.fromisoformat(template["end_date_time"]) - datetime.fromisoformat(
            template["start_date_time"]
        )
        cdr = {
            **template,
            "id": cdr_id(session_id),
            "session_id": session_id,
            "start_date_time": ocpi_datetime(started),
            "end_date_time": ocpi_datetime(started + duration),
        }
        yield cdr_row(
            cdr,
            charge_point_id=f"CP-{i % 5000:05d}",
            connector_id=i % 2 + 1,
            site_id=f"SITE-{i % 200:03d}",
            id_tag=f"TAG-{i % 20000:05d}",
            customer=f"CUST-{i % 1000:04d}",
        )


def _load(url: str, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY cdrs ({INSERT_COLUMNS}) FROM STDIN") as copy:
            for row in _rows(count):
                copy.write_row(row)
        conn.commit()
        cur.execute("ANALYZE cdrs")
        cur.execute("SELECT pg_total_relation_size('cdrs')")
        size = cur.fetchone()
    wall = time.perf_counter() - started
    return {
        "cdrs": count,
        "wall_s": round(wall, 2),
        "rows_per_s": round(count / wall),
        "table_mb": None if size is None else round(size[0] / MB),
    }


class _RssSampler(threading.Thread):
    """The highest resident memory of a process, sampled until stopped."""

    def __init__(self, process: psutil.Process, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.interval = interval
        self.peak = process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _vm_hwm(pid: int) -> int | None:
    """The kernel's peak resident set of ``pid`` (Linux), bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _export(url: str) -> dict[str, Any]:
    key = create_api_key(url, "bench-export", "billing")
    port = free_port()
    env = {
        **os.environ,
        "CHARGEFLOW_DATABASE_URL": url,
        "CHARGEFLOW_API_PORT": str(port),
        "CHARGEFLOW_LOG_LEVEL": "warning",
    }
    api = subprocess.Popen([sys.executable, "-m", "api"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not tcp_open("127.0.0.1", port):
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        process = psutil.Process(api.pid)
        before = process.memory_info().rss
        sampler = _RssSampler(process)
        sampler.start()
        rows = -1  # the header line
        size = 0
        started = time.perf_counter()
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=None) as client,
            client.stream("GET", "/v1/cdrs/export.csv", headers={"X-API-Key": key}) as resp,
        ):
            resp.raise_for_status()
            first_byte = time.perf_counter() - started
            for chunk in resp.iter_bytes():
                size += len(chunk)
                rows += chunk.count(b"\n")
        wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        peak_hwm = _vm_hwm(api.pid)
    finally:
        api.terminate()
        api.wait(15)
    return {
        "rows": rows,
        "mb": round(size / MB, 1),
        "wall_s": round(wall, 2),
        "first_byte_s": round(first_byte, 3),
        "rows_per_s": round(rows / wall),
        "api_rss_before_mb": round(before / MB, 1),
        "api_rss_peak_sampled_mb": round(sampler.peak / MB, 1),
        "api_rss_peak_vmhwm_mb": None if peak_hwm is None else round(peak_hwm / MB, 1),
        "target_peak_rss_mb": 200,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.billing_export")
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        server = database_server(os.environ.get("CHARGEFLOW_BENCH_DATABASE_URL"), Path(tmp))
        try:
            with fresh_database(server) as url:
                result["load"] = _load(url, args.cdrs)
                result["export"] = _export(url)
        finally:
            server.stop()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
