"""Signed meter values (Eichrecht) end to end, on the real broker and database: simulated
stations with signing meters (one OCPP 1.6, one 2.0.1) -> the real gateway -> the
sessions flow (stores them per transaction, idempotent on replay) -> ``sessions.closed``
-> the billing worker, whose CDRs carry the OCPI ``signed_data`` exactly as the
stations sent it."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from billing.preview import decode_json
from billing.receipts import receipt
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from ingest.gateway.server import Gateway
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from tests.support.billing import component, element, tariff_json
from tests.support.gateway import STATION_PASSWORD
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


async def seed_tariff(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await tariff_store.create_tariff(
            conn, tariff_json(element(component("ENERGY", "0.40")), id="SIGNED"), created_by="t"
        )
        await assignment_store.assign(
            conn,
            tariff_id="SIGNED",
            scope=tariff_store.Scope.DEFAULT,
            target=None,
            valid_from=datetime.now(UTC) - timedelta(days=1),
            created_by="t",
        )


def signed_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(
            "SELECT charge_point_id, transaction_id, context, encoding_method, value,"
            " signed_data FROM signed_meter_values ORDER BY charge_point_id, measured_at"
        ).fetchall()


def cdr_bodies(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT charge_point_id, body::text FROM cdrs").fetchall()
    return {cp: decode_json(body, "the CDR") for cp, body in rows}


def signing_fleet(gateway_url: str, database_url: str) -> FleetConfig:
    """One 1.6 (SIGN-0001) and one 2.0.1 (SIGN-0002) station with signing meters, one
    session each."""
    return FleetConfig(
        gateway_url=gateway_url,
        stations=2,
        station_id_prefix="SIGN-",
        sessions_per_station=1,
        ocpp_versions=("1.6", "2.0.1"),
        signed_meter_values=True,
        id_tags=("SIGN-TAG-1", "SIGN-TAG-2"),
        seed=3,
        database_url=database_url,
        station_password=STATION_PASSWORD,
        meter_interval_s=300.0,
        time_scale=600.0,
        mean_dwell_s=1800.0,
        mean_arrival_gap_s=60.0,
    )


async def invoice_all(config: InvoicingConfig, count: int) -> None:
    worker = InvoicingWorker(config, poll_s=0.1)
    task = asyncio.create_task(worker.run())
    try:
        await apoll(lambda: worker.invoiced, lambda n: n >= count, 60, f"{count} invoiced")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


def check_cdrs(cdrs: dict[str, dict[str, Any]], stored: list[tuple[Any, ...]]) -> None:
    """Each CDR's signed_data: OCMF, Start then End, the data as stored, the plain
    registers; the receipt says the values were signed."""
    assert sorted(cdrs) == ["SIGN-0001", "SIGN-0002"]
    for cp, cdr in cdrs.items():
        signed = cdr["signed_data"]
        assert signed["encoding_method"] == "OCMF"
        values = signed["signed_values"]
        assert [v["nature"] for v in values] == ["Start", "End"]
        sent = [r[5] for r in stored if r[0] == cp]
        assert [v["signed_data"] for v in values] == sent  # untouched
        registers = [r[4] for r in stored if r[0] == cp]
        assert [v["plain_data"] for v in values] == [f"{wh:f} Wh" for wh in registers]
        assert receipt(cdr, None)["signed_data"] is True
    v16, v201 = cdrs["SIGN-0001"]["signed_data"], cdrs["SIGN-0002"]["signed_data"]
    assert v16["signed_values"][0]["signed_data"].startswith("OCMF|{")  # 1.6: the string
    assert "public_key" not in v16
    assert base64.b64decode(v201["signed_values"][1]["signed_data"]).startswith(b"OCMF|{")
    assert v201["public_key"]


async def test_signed_start_and_end_reach_the_cdr_as_sent(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, gateway: Gateway
) -> None:
    await seed_tariff(clean_db)
    report = await asyncio.wait_for(run_fleet(signing_fleet(gateway.url, clean_db)), 120)
    assert len(report.sessions) == 2

    flow = SessionsFlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    await asyncio.to_thread(run_main, build_flow(flow))
    stored = signed_rows(clean_db)
    assert [(r[0], r[2], r[3]) for r in stored] == [
        ("SIGN-0001", "Transaction.Begin", "OCMF"),
        ("SIGN-0001", "Transaction.End", "OCMF"),
        ("SIGN-0002", "Transaction.Begin", "OCMF"),
        ("SIGN-0002", "Transaction.End", "OCMF"),
    ]
    truth = {s.charge_point_id: s.energy_wh for s in report.sessions}
    for cp in truth:
        begin, end = (r for r in stored if r[0] == cp)
        assert end[4] - begin[4] == truth[cp]  # the signed registers bound the energy

    await invoice_all(
        InvoicingConfig(kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics), 2
    )
    check_cdrs(cdr_bodies(clean_db), stored)

    # The whole topic again, fresh flow state: no signed value is stored twice.
    await asyncio.to_thread(run_main, build_flow(flow))
    assert signed_rows(clean_db) == stored
