"""A driver's running cost through the API on the real database: an active session is
priced under its tariff up to its last register reading (telemetry time) and grows as
samples arrive; a billed session answers its CDR's totals; no tariff is a 409."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from billing.cdrs import CdrParty
from billing.money import to_minor
from billing.payments.postpaid import PostpaidProvider
from billing.payments.service import PaymentService
from bus.sessions import SessionClosed
from invoicing.invoice import invoice_session
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth, insert_session
from tests.support.billing import component, element, tariff_json
from tests.support.cdrs import closed_session

pytestmark = pytest.mark.integration

STATION = "CP-COST-1"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def add_register(url: str, session: dict[str, object], minutes: int, wh: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO meter_samples (measured_at, charge_point_id, connector_id,"
            " transaction_id, measurand, unit, value) VALUES (%s, %s, 1, %s,"
            " 'Energy.Active.Import.Register', 'Wh', %s)",
            (START + timedelta(minutes=minutes), STATION, session["transaction_id"], wh),
        )


async def seed_tariff(url: str) -> None:
    upsert_site(url, "SITE-COST", "Depot", None, time_zone="Europe/Berlin")
    provision_station(url, STATION, "SITE-COST")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await tariff_store.create_tariff(
            conn,
            tariff_json(
                element(component("ENERGY", "0.40", vat=19), component("FLAT", "1.00", vat=19)),
                id="FLAT-40",
            ),
            created_by="test",
        )
        await assignment_store.assign(
            conn,
            tariff_id="FLAT-40",
            scope=tariff_store.Scope.STATION,
            target=STATION,
            valid_from=START - timedelta(days=3),
            created_by="test",
        )


def stopped_at_40_minutes(session_id: object, transaction_id: object) -> SessionClosed:
    """The session stopped 40 minutes in at 16,000 Wh."""
    return closed_session(
        START,
        energy_wh=6_000,
        minutes=40,
        charge_point_id=STATION,
        session_id=str(session_id),
        transaction_id=str(transaction_id),
        meter_start_wh=10_000,
    )


async def test_running_cost_grows_with_the_register_and_ends_at_the_cdr(
    clean_db: str, keys: dict[str, str]
) -> None:
    with psycopg.connect(clean_db, autocommit=True) as db:
        session = insert_session(
            db,
            charge_point_id=STATION,
            status="active",
            started_at=START,
            stopped_at=None,
            meter_start_wh=10_000,
            meter_stop_wh=None,
            energy_wh=None,
        )
    path = f"/v1/sessions/{session['session_id']}/cost"
    async with api_client(clean_db) as client:
        assert_problem(await client.get(path, headers=auth(keys["billing"])), 409)  # no tariff
        await seed_tariff(clean_db)
        add_register(clean_db, session, 15, 12_500)
        answer = await client.get(path, headers=auth(keys["operator"]))
        assert answer.status_code == 200, answer.text
        first = answer.json()
        assert first["final"] is False
        assert first["as_of"].startswith((START + timedelta(minutes=15)).isoformat()[:19])
        # 2.5 kWh x 0.40 + 1.00 = 2.00 excl., 2.38 incl. 19 % VAT
        assert (
            Decimal(first["total_cost"]["excl_vat"]),
            Decimal(first["total_cost"]["incl_vat"]),
        ) == (
            Decimal("2.00"),
            Decimal("2.38"),
        )
        add_register(clean_db, session, 30, 15_000)
        later = (await client.get(path, headers=auth(keys["billing"]))).json()
        assert Decimal(later["total_cost"]["excl_vat"]) == Decimal("3.00")
        assert Decimal(later["total_energy_kwh"]) == Decimal(5)

        closed = stopped_at_40_minutes(session["session_id"], session["transaction_id"])
        async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
            billed = await invoice_session(conn, closed, CdrParty("DE", "CFL"))
        assert billed.cdr is not None
        final = (await client.get(path, headers=auth(keys["billing"]))).json()
        assert final["final"] is True
        assert final["cdr_id"] == billed.cdr["id"]
        assert Decimal(str(final["total_cost"]["excl_vat"])) == Decimal("3.40")
        assert_problem(
            await client.get(f"/v1/sessions/{uuid.uuid4()}/cost", headers=auth(keys["billing"])),
            404,
        )
        assert (await client.get(path, headers=auth(keys["maintenance"]))).status_code == 403


async def test_the_receipt_adds_up_and_shows_the_payment(
    clean_db: str, keys: dict[str, str]
) -> None:
    await seed_tariff(clean_db)
    session_id = uuid.uuid4()
    with psycopg.connect(clean_db, autocommit=True) as db:
        insert_session(db, session_id=session_id, charge_point_id=STATION, started_at=START)
    closed = closed_session(
        START,
        energy_wh=7_777,
        minutes=45,
        charge_point_id=STATION,
        session_id=str(session_id),
        transaction_id="9",
        meter_start_wh=0,
    )
    path = f"/v1/sessions/{session_id}/receipt"
    async with api_client(clean_db) as client:
        assert_problem(await client.get(path, headers=auth(keys["billing"])), 409)  # not billed
        with ConnectionPool(clean_db, min_size=1, max_size=2) as pool:
            service = PaymentService(pool, {"postpaid": PostpaidProvider(pool)})
            service.preauthorize(
                session_id=str(session_id),
                provider="postpaid",
                customer="TAG-1",
                currency="EUR",
                amount_minor=5000,
            )
            async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
                billed = await invoice_session(conn, closed, CdrParty("DE", "CFL"))
            assert billed.cdr is not None
            service.capture(str(session_id), to_minor(billed.cdr["total_cost"]["incl_vat"], "EUR"))
        body = (await client.get(path, headers=auth(keys["operator"]))).json()
        lines = body["lines"]
        assert sum(Decimal(line["excl_vat"]) for line in lines) == Decimal(body["total_excl_vat"])
        assert sum(Decimal(v["gross"]) for v in body["vat"]) == Decimal(body["total_incl_vat"])
        # 7.777 kWh x 0.40 = 3.1108 + 1.00 = 4.1108 -> 4.11; incl. 19 %: 4.891852 -> 4.89
        assert (body["total_excl_vat"], body["total_incl_vat"]) == ("4.11", "4.89")
        assert body["payment"]["status"] == "captured"
        assert Decimal(body["payment"]["captured"]) == Decimal("4.89")
        page = await client.get(f"{path}.html", headers=auth(keys["billing"]))
        assert page.headers["content-type"].startswith("text/html")
        assert "4.89 EUR" in page.text
        assert "19 %" in page.text
        missing = f"/v1/sessions/{uuid.uuid4()}/receipt"
        assert_problem(await client.get(missing, headers=auth(keys["billing"])), 404)
