"""Eichrecht in the billing worker, on the real broker and database: sessions on
``sessions.closed`` whose signed meter values are stored (``signed_meter_values``, as the
sessions flow writes them) bill the signed span. A billing smart meter the flow chose is
overridden when the station's register is that span, a session whose figures are not the
span is held naming both, one with only a signed Start is billed as measured, and a CDR
priced with a TIME component on such a station carries ``compliance_warnings``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from billing.cdrs import CdrParty, ClerkDecision
from billing.preview import decode_json
from bus.producer import Producer, producer_config
from bus.sessions import EnergySource, Quality, SessionClosed, encode_session_closed
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.sessions.rows import SignedValueRow
from invoicing.config import InvoicingConfig
from invoicing.invoice import bill_session
from invoicing.worker import InvoicingWorker
from store import tariffs as tariff_store
from store.signed_values import write_signed_values
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.billing import component, element, tariff_json
from tests.support.billing_worker import assign_tariff
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

STATION = "CP-EICH-1"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY + timedelta(days=2, hours=9)  # after the tariffs are created
# connector -> tariff: 2 is priced per minute charging as well.
TARIFFS = {
    1: tariff_json(element(component("ENERGY", "0.40")), id="EICH-KWH"),
    2: tariff_json(
        element(component("ENERGY", "0.30"), component("TIME", "1.20", step=60)), id="EICH-MIN"
    ),
}


def closed(
    connector: int, *, energy_wh: int, source: EnergySource, station_wh: int
) -> SessionClosed:
    """A session on ``connector`` (transaction = connector) from register 500 000 Wh:
    the flow billed ``energy_wh`` from ``source``; the station's register says
    ``station_wh``; a smart meter said 21 400 Wh."""
    return SessionClosed(
        message_id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        charge_point_id=STATION,
        connector_id=connector,
        transaction_id=str(connector),
        started_at=START,
        stopped_at=START + timedelta(hours=2),
        closed_at=START + timedelta(hours=2, seconds=2),
        energy_wh=energy_wh,
        energy_source=source,
        quality=Quality.EXACT,
        id_tag="TAG-EICH",
        meter_start_wh=500_000,
        meter_stop_wh=500_000 + station_wh,
        station_energy_wh=station_wh,
        smart_meter_energy_wh=21_400,
        smart_meter_id="SM-EICH",
    )


def signed(connector: int, context: str, register_kwh: str, minutes: int) -> SignedValueRow:
    return SignedValueRow(
        measured_at=START + timedelta(minutes=minutes),
        charge_point_id=STATION,
        connector_id=connector,
        transaction_id=str(connector),
        measurand="Energy.Active.Import.Register",
        context=context,
        signed_data=f'OCMF|{{"TX":"{context[12]}","RV":{register_kwh}}}|{{"SD":"AB"}}',
        encoding_method="OCMF",
        signing_method=None,
        public_key=None,
        value=Decimal(register_kwh),
        unit="kWh",
        unit_multiplier=0,
    )


def signed_span(connector: int) -> list[SignedValueRow]:
    """Signed 500.000 kWh at the start, 521.000 kWh at the end: 21 000 Wh."""
    return [
        signed(connector, "Transaction.Begin", "500.000", 0),
        signed(connector, "Transaction.End", "521.000", 120),
    ]


async def seed(url: str, rows: list[SignedValueRow]) -> None:
    upsert_site(url, "SITE-EICH", "Depot", 100_000, time_zone="Europe/Berlin")
    provision_station(url, STATION, "SITE-EICH")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for connector in (1, 2, 3, 4):
            body = TARIFFS.get(connector, TARIFFS[1])
            target = f"{STATION}:{connector}"
            await assign_tariff(
                conn, body, tariff_store.Scope.CONNECTOR, target, TODAY, create=connector in TARIFFS
            )
    with psycopg.connect(url) as db, db.cursor() as cur:
        write_signed_values(cur, rows)


async def invoice(
    broker: EmbeddedBroker, url: str, topics: Topics, sessions: list[SessionClosed]
) -> None:
    producer = Producer(producer_config(broker.bootstrap))
    producer.start()
    try:
        for session in sessions:
            await producer.publish(
                topics.sessions_closed, STATION.encode(), encode_session_closed(session)
            )
    finally:
        await producer.aclose()
    config = InvoicingConfig(kafka_bootstrap=broker.bootstrap, database_url=url, topics=topics)
    worker = InvoicingWorker(config, poll_s=0.1)
    task = asyncio.create_task(worker.run())
    try:
        count = len(sessions)
        await apoll(lambda: worker.invoiced, lambda n: n >= count, 60, f"{count} invoiced")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


def stored(url: str) -> tuple[dict[int, dict[str, Any]], dict[int, list[str]]]:
    """The CDRs and the held sessions' reasons, by connector."""
    with psycopg.connect(url) as db:
        cdrs = db.execute("SELECT connector_id, body::text FROM cdrs").fetchall()
        held = db.execute("SELECT connector_id, reasons FROM billing_reviews").fetchall()
    return {c: decode_json(body, "the CDR") for c, body in cdrs}, dict(held)


async def test_signed_sessions_bill_the_signed_span_or_are_held(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    smart, station = EnergySource.SMART_METER, EnergySource.STATION_REGISTER
    sessions = [
        # 1: neither the smart meter (billed) nor the station register is the span: held.
        closed(1, energy_wh=21_400, source=smart, station_wh=20_900),
        # 2: the smart meter was billed, the station register is the span: overridden.
        closed(2, energy_wh=21_400, source=smart, station_wh=21_000),
        # 3: the station register, the span, was billed: as it is, no warning.
        closed(3, energy_wh=21_000, source=station, station_wh=21_000),
        # 4: only a signed Start: nothing to check, the smart meter's figure is billed.
        closed(4, energy_wh=21_400, source=smart, station_wh=20_900),
    ]
    rows = [
        *signed_span(1),
        *signed_span(2),
        *signed_span(3),
        signed(4, "Transaction.Begin", "500.000", 0),
    ]
    await seed(clean_db, rows)
    with capture_logs() as events:
        await invoice(broker, clean_db, topics, sessions)
    cdrs, held = stored(clean_db)

    assert sorted(cdrs) == [2, 3, 4]
    (reason,) = held[1]
    assert "bill 21000 Wh (signed End - Start)" in reason
    assert "21400 Wh (smart_meter)" in reason
    assert "station register 20900 Wh" in reason

    assert cdrs[2]["total_energy"] == Decimal(21)  # the signed span, not the smart meter's
    assert "meter_id" not in cdrs[2]  # not the overridden smart meter
    (warning,) = cdrs[2]["compliance_warnings"]
    assert "(TIME) of tariff EICH-MIN" in warning
    assert "not certified for tariffing" in warning
    assert cdrs[3]["total_energy"] == Decimal(21)
    assert "compliance_warnings" not in cdrs[3]  # priced per kWh only
    assert cdrs[4]["total_energy"] == Decimal("21.4")
    assert "compliance_warnings" not in cdrs[4]
    assert [v["nature"] for v in cdrs[2]["signed_data"]["signed_values"]] == ["Start", "End"]

    logged = [e for e in events if e.get("log_level") == "warning"]
    overridden = [e for e in logged if "smart meter overridden" in e["event"]]
    assert [e["session_id"] for e in overridden] == [sessions[1].session_id]
    assert overridden[0]["signed_span_wh"] == 21_000
    assert [e["cdr_id"] for e in logged if e["event"] == "CDR with compliance warnings"] == [
        cdrs[2]["id"]
    ]


async def test_a_clerks_release_of_a_mismatch_bills_it_and_the_cdr_says_so(clean_db: str) -> None:
    session = closed(1, energy_wh=21_400, source=EnergySource.SMART_METER, station_wh=20_900)
    await seed(clean_db, signed_span(1))
    release = ClerkDecision(action="release", by="clerk@cpo", at=session.closed_at)
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        outcome = await bill_session(conn, session, CdrParty("DE", "CFL"), decision=release)
    assert outcome.cdr is not None
    assert outcome.cdr["total_energy"] == Decimal("21.4")  # what the clerk released
    assert outcome.cdr["compliance_warnings"] == [
        "billed energy 21400 Wh is not the signed span 21000 Wh (signed End - Start)"
    ]
