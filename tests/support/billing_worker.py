"""The billing worker's test fleet: one station on a site with a time-of-use tariff
(peak 17:00-21:00 Amsterdam), closed sessions of 22 kWh over two hours with their
register samples, a postpaid hold, and the worker run in this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from billing.payments.postpaid import PostpaidProvider
from billing.payments.service import PaymentService
from bus.producer import Producer, producer_config
from bus.sessions import EnergySource, Quality, SessionClosed
from chargeflow.stack import EmbeddedBroker
from invoicing.worker import InvoicingWorker
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.billing import component, element, tariff_json

STATION = "CP-BILL-1"
# Sessions start after the tariff is created (the version in force is the latest
# created before the start); 17:00 local Amsterdam is where the peak begins.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY + timedelta(days=2, hours=15, minutes=30)  # 16:30 or 17:30 local
TOU = tariff_json(
    element(component("ENERGY", "0.50"), start_time="17:00", end_time="21:00"),
    element(component("ENERGY", "0.30"), component("FLAT", "0.25")),
    id="TOU-BILL",
)


def closed(
    session_id: uuid.UUID,
    *,
    quality: Quality = Quality.EXACT,
    transaction: str = "1",
    connector: int = 1,
) -> SessionClosed:
    return SessionClosed(
        message_id=str(uuid.uuid4()),
        session_id=str(session_id),
        charge_point_id=STATION,
        connector_id=connector,
        transaction_id=transaction,
        started_at=START,
        stopped_at=START + timedelta(hours=2),
        closed_at=START + timedelta(hours=2, seconds=2),
        energy_wh=22_000,
        energy_source=EnergySource.STATION_REGISTER,
        quality=quality,
        quality_reasons=[] if quality is Quality.EXACT else ["register_jump"],
        id_tag="TAG-BILL",
        meter_start_wh=500_000,
        meter_stop_wh=522_000,
    )


def store_samples(url: str, transaction: str, connector: int) -> None:
    """The station register each half hour: 11 kW all along."""
    with psycopg.connect(url, autocommit=True) as db:
        for k in range(1, 4):
            db.execute(
                "INSERT INTO meter_samples (measured_at, charge_point_id, connector_id,"
                " transaction_id, measurand, unit, value) VALUES (%s, %s, %s, %s,"
                " 'Energy.Active.Import.Register', 'Wh', %s)",
                (
                    START + timedelta(minutes=30 * k),
                    STATION,
                    connector,
                    transaction,
                    500_000 + 5_500 * k,
                ),
            )


@asynccontextmanager
async def running(worker: InvoicingWorker) -> AsyncIterator[InvoicingWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def produce(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> None:
    producer = Producer(producer_config(broker.bootstrap))
    producer.start()
    try:
        for value in values:
            await producer.publish(topic, STATION.encode(), value)
    finally:
        await producer.aclose()


async def assign_tariff(
    conn: psycopg.AsyncConnection[Any],
    tariff: dict[str, Any],
    scope: tariff_store.Scope,
    target: str,
    valid_from: datetime,
    *,
    create: bool = True,
) -> None:
    """Store ``tariff`` (unless ``create`` is False: stored before) and assign it to
    ``target`` from ``valid_from``."""
    if create:
        await tariff_store.create_tariff(conn, tariff, created_by="test")
    await assignment_store.assign(
        conn,
        tariff_id=tariff["id"],
        scope=scope,
        target=target,
        valid_from=valid_from,
        created_by="test",
    )


async def seed_site_tariff_and_payment(url: str, paid: uuid.UUID) -> None:
    upsert_site(url, "SITE-BILL", "Depot", 100_000, time_zone="Europe/Amsterdam")
    provision_station(url, STATION, "SITE-BILL")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await assign_tariff(conn, TOU, tariff_store.Scope.SITE, "SITE-BILL", TODAY)
    store_samples(url, "1", 1)
    store_samples(url, "2", 2)
    with ConnectionPool(url, min_size=1, max_size=2) as pool:
        PaymentService(pool, {"postpaid": PostpaidProvider(pool)}).preauthorize(
            session_id=str(paid),
            provider="postpaid",
            customer="TAG-BILL",
            currency="EUR",
            amount_minor=5000,
        )
