"""Billing clerks' decisions on held sessions, carried out by the billing worker on the
real broker and database: a released session is billed as measured, a corrected one
with the clerk's energy spread as its samples rose (the time-of-use split follows them),
both CDRs stored, published on ``billing.cdrs`` and captured; a written-off one issues
nothing and its wallet hold is released. A worker restarted after a crash before a
decision was marked settled, and a replay of ``sessions.closed``, issue, capture and
release nothing twice."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from billing.money import to_minor
from billing.payments.postpaid import PostpaidProvider
from billing.payments.service import PaymentService
from billing.payments.wallet import WalletProvider
from billing.preview import decode_json
from bus.admin import read_topic
from bus.sessions import EnergySource, Quality, SessionClosed, encode_session_closed
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import ledger
from store import tariffs as tariff_store
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client, auth, insert_session
from tests.support.billing_worker import TOU, assign_tariff, produce, running
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

STATION = "CP-BILL-1"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
# 16:30 local, two days ahead (after the tariff's creation): the first half hour is
# off-peak, the peak (0.50/kWh) starts at 17:00 local whatever the season.
START = datetime.combine(
    datetime.now(AMSTERDAM).date() + timedelta(days=2), time(16, 30), AMSTERDAM
).astimezone(UTC)
# The register rises fast in the first (off-peak) half hour, then slowly: 16 of 22 kWh
# before 17:00. A linear profile would put 5.5 kWh there.
REGISTER_RISE = (16_000, 18_000, 20_000)
METER_START = 500_000
CASES = {  # decision -> (connector, the flow's quality, customer, payment provider)
    "release": (1, Quality.ESTIMATED, "TAG-REL", "postpaid"),
    "correct": (2, Quality.CORRECTED, "TAG-COR", "wallet"),
    "write-off": (3, Quality.CORRECTED, "TAG-OFF", "wallet"),
}
TOP_UP = 10_000
HOLD = 3_000


def held_session(connector: int, quality: Quality, customer: str) -> SessionClosed:
    return SessionClosed(
        message_id=str(uuid.uuid4()),
        session_id=str(uuid.uuid4()),
        charge_point_id=STATION,
        connector_id=connector,
        transaction_id=f"R{connector}",
        started_at=START,
        stopped_at=START + timedelta(hours=2),
        closed_at=START + timedelta(hours=2, seconds=2),
        energy_wh=22_000,
        energy_source=EnergySource.STATION_REGISTER,
        quality=quality,
        quality_reasons=["register_jump"],
        id_tag=customer,
        meter_start_wh=METER_START,
        meter_stop_wh=METER_START + 22_000,
    )


def store_session(url: str, session: SessionClosed) -> None:
    """The session's row (what billing bills a decision from) and its register samples."""
    with psycopg.connect(url, autocommit=True) as db:
        insert_session(
            db,
            session_id=uuid.UUID(session.session_id),
            charge_point_id=STATION,
            connector_id=session.connector_id,
            transaction_id=session.transaction_id,
            id_tag=session.id_tag,
            started_at=session.started_at,
            stopped_at=session.stopped_at,
            meter_start_wh=session.meter_start_wh,
            meter_stop_wh=session.meter_stop_wh,
            energy_wh=session.energy_wh,
            quality=session.quality.value,
            quality_reasons=session.quality_reasons,
        )
        for k, rise in enumerate(REGISTER_RISE, start=1):
            db.execute(
                "INSERT INTO meter_samples (measured_at, charge_point_id, connector_id,"
                " transaction_id, measurand, unit, value) VALUES (%s, %s, %s, %s,"
                " 'Energy.Active.Import.Register', 'Wh', %s)",
                (
                    START + timedelta(minutes=30 * k),
                    STATION,
                    session.connector_id,
                    session.transaction_id,
                    METER_START + rise,
                ),
            )


async def seed(url: str) -> dict[str, SessionClosed]:
    upsert_site(url, "SITE-REV", "Depot", 100_000, time_zone="Europe/Amsterdam")
    provision_station(url, STATION, "SITE-REV")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await assign_tariff(
            conn, TOU, tariff_store.Scope.SITE, "SITE-REV", START - timedelta(days=1)
        )
    sessions = {}
    with ConnectionPool(url, min_size=1, max_size=2) as pool:
        wallet = WalletProvider(pool)
        payments = PaymentService(pool, {"wallet": wallet, "postpaid": PostpaidProvider(pool)})
        for name, (connector, quality, customer, provider) in CASES.items():
            session = held_session(connector, quality, customer)
            store_session(url, session)
            if provider == "wallet":
                wallet.top_up(
                    customer, TOP_UP, "EUR", reference=f"bank-{customer}", idempotency_key=customer
                )
            payments.preauthorize(
                session_id=session.session_id,
                provider=provider,
                customer=customer,
                currency="EUR",
                amount_minor=HOLD,
            )
            sessions[name] = session
    return sessions


async def decide(client: httpx.AsyncClient, sessions: dict[str, SessionClosed], key: str) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "release": {"note": "register jump checked: figure right"},
        "correct": {"corrected_energy_wh": 11_000, "note": "smart meter read on site"},
        "write-off": {"note": "station fault, goodwill"},
    }
    for name, body in bodies.items():
        resp = await client.post(
            f"/v1/billing/reviews/{sessions[name].session_id}/{name}",
            json=body,
            headers=auth(key),
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["settled_at"] is None  # the worker carries it out


def stored(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql, params).fetchall()


def cdr_of(url: str, session: SessionClosed) -> dict[str, Any]:
    rows = stored(url, "SELECT body::text FROM cdrs WHERE session_id = %s", session.session_id)
    assert len(rows) == 1, rows
    body: dict[str, Any] = decode_json(rows[0][0], "the CDR")
    return body


def volumes(cdr: dict[str, Any]) -> dict[Decimal, Decimal]:
    """kWh billed per energy price."""
    out: dict[Decimal, Decimal] = {}
    for line in cdr["cost_breakdown"]:
        if line["type"] == "ENERGY":
            out[line["price"]] = out.get(line["price"], Decimal(0)) + line["volume"]
    return out


def payment(url: str, session: SessionClosed) -> tuple[str, int]:
    rows = stored(
        url,
        "SELECT status, captured_minor FROM session_payments WHERE session_id = %s",
        session.session_id,
    )
    return str(rows[0][0]), int(rows[0][1])


def check_released(url: str, session: SessionClosed) -> dict[str, Any]:
    cdr = cdr_of(url, session)
    assert cdr["total_energy"] == Decimal(22)
    assert cdr["energy_quality"] == "estimated"  # as the flow measured it
    assert cdr["review"]["action"] == "release"
    assert cdr["review"]["by"] == "test-billing"
    assert volumes(cdr) == {Decimal("0.30"): Decimal(16), Decimal("0.50"): Decimal(6)}
    # 16 kWh x 0.30 + 0.25 start + 6 kWh x 0.50
    assert cdr["total_cost"]["excl_vat"] == Decimal("8.05")
    assert payment(url, session) == (
        "captured",
        to_minor(Decimal(str(cdr["total_cost"]["incl_vat"])), "EUR"),
    )
    return cdr


def check_corrected(url: str, session: SessionClosed) -> dict[str, Any]:
    cdr = cdr_of(url, session)
    assert cdr["total_energy"] == Decimal(11)
    assert cdr["energy_quality"] == "corrected"
    assert cdr["review"] == {
        "action": "correct",
        "by": "test-billing",
        "at": cdr["last_updated"],
        "note": "smart meter read on site",
        "corrected_energy_wh": 11_000,
        "measured_energy_wh": 22_000,
    }
    # Spread as the register rose: 16/22 of 11 kWh off-peak (linear would be 2.75 kWh).
    assert volumes(cdr) == {Decimal("0.30"): Decimal(8), Decimal("0.50"): Decimal(3)}
    assert cdr["total_cost"]["excl_vat"] == Decimal("4.15")  # 8 x 0.30 + 0.25 + 3 x 0.50
    captured = to_minor(Decimal(str(cdr["total_cost"]["incl_vat"])), "EUR")
    assert payment(url, session) == ("captured", captured)
    return cdr


def check_written_off(url: str, session: SessionClosed) -> None:
    assert stored(url, "SELECT 1 FROM cdrs WHERE session_id = %s", session.session_id) == []
    assert payment(url, session) == ("canceled", 0)
    with psycopg.connect(url) as db:
        balance = ledger.balance(db, "TAG-OFF", "EUR")
        assert ledger.reconcile(db).ok
    assert (balance.available_minor, balance.held_minor) == (TOP_UP, 0)
    events = stored(
        url,
        "SELECT actor, detail FROM payment_events WHERE session_id = %s AND kind = 'canceled'",
        session.session_id,
    )
    assert events == [("test-billing", "station fault, goodwill")]


def counts(url: str) -> tuple[Any, ...]:
    """CDRs, captures and hold releases stored so far."""
    return stored(
        url,
        "SELECT (SELECT count(*) FROM cdrs),"
        " (SELECT count(*) FROM payment_events WHERE kind = 'captured'),"
        " (SELECT count(*) FROM payment_events WHERE kind = 'canceled')",
    )[0]


async def test_decisions_are_billed_captured_or_released_once(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, keys: dict[str, str]
) -> None:
    sessions = await seed(clean_db)
    await produce(
        broker, topics.sessions_closed, [encode_session_closed(s) for s in sessions.values()]
    )
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics, review_poll_s=0.1
    )
    async with (
        running(InvoicingWorker(config, poll_s=0.1)) as worker,
        api_client(clean_db) as client,
    ):
        await apoll(lambda: worker.invoiced, lambda n: n >= 3, 60, "3 sessions held")
        assert counts(clean_db) == (0, 0, 0)  # held: nothing billed, nothing released
        await decide(client, sessions, keys["billing"])
        await apoll(lambda: worker.reviews.settled, lambda n: n >= 3, 60, "3 decisions settled")
        resp = await client.get("/v1/billing/reviews", headers=auth(keys["billing"]))
    released = check_released(clean_db, sessions["release"])
    corrected = check_corrected(clean_db, sessions["correct"])
    check_written_off(clean_db, sessions["write-off"])
    answered = {r["session_id"]: r for r in resp.json()["items"]}
    assert answered[sessions["release"].session_id]["cdr_id"] == released["id"]
    assert answered[sessions["correct"].session_id]["cdr_id"] == corrected["id"]
    assert answered[sessions["write-off"].session_id]["cdr_id"] is None
    assert all(r["settled_at"] is not None for r in answered.values())
    published = [
        decode_json(m.value() or b"", "cdr")
        for m in read_topic(broker.bootstrap, topics.billing_cdrs)
    ]
    assert sorted(c["id"] for c in published) == sorted([released["id"], corrected["id"]])
    assert counts(clean_db) == (2, 2, 1)

    await _restart_after_a_crash_before_settling(broker, clean_db, config, sessions)


async def _restart_after_a_crash_before_settling(
    broker: EmbeddedBroker,
    url: str,
    config: InvoicingConfig,
    sessions: dict[str, SessionClosed],
) -> None:
    """The steps were done but the marks lost (a crash just before them): a new worker
    (and a replay of sessions.closed) does them again without a second CDR, capture or
    release."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE billing_reviews SET settled_at = NULL, cdr_id = NULL")
    replay = replace(config, consumer_group="chargeflow-billing-replay")
    async with running(InvoicingWorker(replay, poll_s=0.1)) as worker:
        await apoll(lambda: worker.reviews.settled, lambda n: n >= 3, 60, "3 settled again")
        await apoll(lambda: worker.invoiced, lambda n: n >= 3, 60, "sessions.closed replayed")
    assert counts(url) == (2, 2, 1)
    check_released(url, sessions["release"])
    check_corrected(url, sessions["correct"])
    check_written_off(url, sessions["write-off"])
    reviews = stored(url, "SELECT status, settled_at IS NOT NULL FROM billing_reviews")
    assert sorted(reviews) == [("corrected", True), ("released", True), ("written_off", True)]
    # Published again (consumers keep one per id): the same CDRs.
    ids = [
        decode_json(m.value() or b"", "cdr")["id"]
        for m in read_topic(broker.bootstrap, config.topics.billing_cdrs)
    ]
    assert len(ids) == 4
    assert len(set(ids)) == 2


async def test_a_release_without_a_tariff_is_billed_once_one_is_assigned(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, keys: dict[str, str]
) -> None:
    upsert_site(clean_db, "SITE-REV", "Depot", 100_000, time_zone="Europe/Amsterdam")
    provision_station(clean_db, STATION, "SITE-REV")
    session = held_session(1, Quality.ESTIMATED, "TAG-LATE")
    store_session(clean_db, session)
    await produce(broker, topics.sessions_closed, [encode_session_closed(session)])
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        review_poll_s=0.1,
        review_retry_s=0.5,
    )
    async with (
        running(InvoicingWorker(config, poll_s=0.1)) as worker,
        api_client(clean_db) as client,
    ):
        await apoll(lambda: worker.invoiced, lambda n: n >= 1, 60, "the session held")
        resp = await client.post(
            f"/v1/billing/reviews/{session.session_id}/release",
            json={"note": "register jump checked"},
            headers=auth(keys["billing"]),
        )
        assert resp.status_code == 200, resp.text
        await apoll(lambda: worker.reviews.deferred, lambda n: n >= 1, 60, "no tariff: put off")
        assert stored(clean_db, "SELECT 1 FROM cdrs") == []
        async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
            await assign_tariff(
                conn, TOU, tariff_store.Scope.SITE, "SITE-REV", START - timedelta(days=1)
            )
        await apoll(lambda: worker.reviews.settled, lambda n: n >= 1, 60, "billed at a retry")
    assert cdr_of(clean_db, session)["total_energy"] == Decimal(22)
