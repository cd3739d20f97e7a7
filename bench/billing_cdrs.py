"""CDR generation from ``sessions.closed`` (JSON on stdout; asserts nothing).

``--sessions`` closed sessions (default 5,000) of ``--samples`` register samples each
are stored and published on a fresh topic of the embedded broker; one billing worker
(``invoicing.worker``, in this process) reads them and, per session, looks up the
tariff (a time-of-use tariff assigned to the site), reads the samples, prices, stores
the CDR, publishes it on ``billing.cdrs`` and commits. Reported: CDRs/s from the first
read to the last commit, and the stored and published counts (they must equal the
sessions). Compare ``bench.billing``'s pricing alone: the difference is the database and
the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import bench_stack, machine_info
from bus.admin import read_topic
from bus.producer import Producer, producer_config
from bus.sessions import EnergySource, Quality, SessionClosed, encode_session_closed
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import tariff_assignments, tariffs
from store.sites import upsert_site
from store.stations import provision_station

STATIONS = 50
TARIFF = {
    "country_code": "NL",
    "party_id": "CFL",
    "id": "BENCH-TOU",
    "currency": "EUR",
    "elements": [
        {"price_components": [{"type": "FLAT", "price": "0.50", "vat": "21", "step_size": 1}]},
        {
            "price_components": [{"type": "ENERGY", "price": "0.49", "vat": "21", "step_size": 1}],
            "restrictions": {"start_time": "17:00", "end_time": "21:00"},
        },
        {"price_components": [{"type": "ENERGY", "price": "0.35", "vat": "21", "step_size": 1}]},
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}


def _seed(url: str, count: int, samples: int, start: datetime) -> list[SessionClosed]:
    upsert_site(url, "BENCH", "Bench site", None, time_zone="Europe/Amsterdam")
    for n in range(STATIONS):
        provision_station(url, f"BENCH-{n:03d}", "BENCH")

    async def tariff() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await tariffs.create_tariff(conn, TARIFF, created_by="bench")
            await tariff_assignments.assign(
                conn,
                tariff_id="BENCH-TOU",
                scope=tariffs.Scope.SITE,
                target="BENCH",
                valid_from=start - timedelta(days=1),
                created_by="bench",
            )

    asyncio.run(tariff())
    sessions, rows = [], []
    for k in range(count):
        station, connector = f"BENCH-{k % STATIONS:03d}", 1 + (k // STATIONS) % 2
        began = start + timedelta(minutes=90 * (k // (2 * STATIONS)))
        step = timedelta(minutes=60 / samples)
        energy = 11_000
        for s in range(1, samples):
            rows.append((began + s * step, station, connector, str(k), energy * s // samples))
        sessions.append(
            SessionClosed(
                message_id=str(uuid.uuid4()),
                session_id=str(uuid.uuid4()),
                charge_point_id=station,
                connector_id=connector,
                transaction_id=str(k),
                started_at=began,
                stopped_at=began + timedelta(hours=1),
                closed_at=began + timedelta(hours=1, seconds=1),
                energy_wh=energy,
                energy_source=EnergySource.STATION_REGISTER,
                quality=Quality.EXACT,
                id_tag="BENCH-TAG",
                meter_start_wh=0,
                meter_stop_wh=energy,
            )
        )
    with (
        psycopg.connect(url, autocommit=True) as db,
        db.cursor() as cur,
        cur.copy(
            "COPY meter_samples (measured_at, charge_point_id, connector_id, transaction_id,"
            " measurand, unit, value) FROM STDIN"
        ) as copy,
    ):
        for at, station, connector, tx, wh in rows:
            copy.write_row((at, station, connector, tx, "Energy.Active.Import.Register", "Wh", wh))
    return sessions


async def _produce(bootstrap: str, topic: str, sessions: list[SessionClosed]) -> None:
    producer = Producer(producer_config(bootstrap))
    producer.start()
    try:
        await asyncio.gather(
            *(
                producer.publish(topic, s.charge_point_id.encode(), encode_session_closed(s))
                for s in sessions
            )
        )
    finally:
        await producer.aclose()


async def _invoice(config: InvoicingConfig, count: int) -> float:
    worker = InvoicingWorker(config, poll_s=0.05)
    task = asyncio.create_task(worker.run())
    began: float | None = None
    deadline = time.monotonic() + 3600
    while worker.invoiced < count and time.monotonic() < deadline and not task.done():
        if began is None and worker.invoiced:
            began = time.perf_counter()
        await asyncio.sleep(0.01)
    ended = time.perf_counter()
    worker.stop()
    await task
    return ended - (began or ended)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.billing_cdrs")
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args(argv)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    report: dict[str, Any] = {"machine": machine_info(), "sessions": args.sessions}
    with bench_stack("cdrs", partitions=2) as stack:
        sessions = _seed(stack.database_url, args.sessions, args.samples, start)
        asyncio.run(_produce(stack.broker.bootstrap, stack.topics.sessions_closed, sessions))
        config = InvoicingConfig(
            kafka_bootstrap=stack.broker.bootstrap,
            database_url=stack.database_url,
            topics=stack.topics,
        )
        seconds = asyncio.run(_invoice(config, args.sessions))
        with psycopg.connect(stack.database_url) as db:
            row = db.execute("SELECT count(*) FROM cdrs").fetchone()
        stored = row[0] if row else 0
        published = sum(1 for _ in read_topic(stack.broker.bootstrap, stack.topics.billing_cdrs))
    report.update(
        samples_per_session=args.samples,
        seconds=round(seconds, 2),
        cdrs_per_s=round(stored / seconds) if seconds else None,
        cdrs_stored=stored,
        cdrs_published=published,
        database=stack.database_origin,
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
