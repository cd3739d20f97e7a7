"""The billing worker on the real broker and database: closed sessions on
``sessions.closed`` become stored CDRs (priced under the assigned time-of-use tariff in
the site's time zone, from the stored samples), published on ``billing.cdrs``, with the
session's payment captured for the CDR's total; a doubtful session is held for review;
an unreadable message is dead-lettered; reading everything again changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from msgspec.structs import replace as replace_struct
from psycopg_pool import ConnectionPool

from billing.cdrs import CdrParty
from billing.money import to_minor
from billing.payments.service import PaymentService
from billing.payments.stripe import StripeProvider
from billing.preview import decode_json
from bus.admin import read_topic
from bus.sessions import Quality, encode_session_closed
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from invoicing.config import InvoicingConfig
from invoicing.invoice import invoice_session
from invoicing.worker import InvoicingWorker
from tests.support.billing_worker import (
    START,
    closed,
    produce,
    running,
    seed_site_tariff_and_payment,
)
from tests.support.fake_stripe import FakeStripe, fake_stripe
from tests.support.polling import apoll, apoll_async

pytestmark = pytest.mark.integration


async def invoice_all(config: InvoicingConfig, count: int) -> None:
    async with running(InvoicingWorker(config, poll_s=0.1)) as worker:
        await apoll(lambda: worker.invoiced, lambda n: n >= count, 60, f"{count} invoiced")


def check_cdrs_and_payment(url: str, billed: uuid.UUID, paid: uuid.UUID, held: uuid.UUID) -> None:
    with psycopg.connect(url) as db:
        cdrs = db.execute(
            "SELECT session_id, total_excl_minor, total_incl_minor, site_id, body::text"
            " FROM cdrs ORDER BY session_id"
        ).fetchall()
        reviews = db.execute("SELECT session_id, status FROM billing_reviews").fetchall()
        payment = db.execute(
            "SELECT status, captured_minor FROM session_payments WHERE session_id = %s",
            (str(paid),),
        ).fetchone()
    assert sorted(row[0] for row in cdrs) == sorted([str(billed), str(paid)])
    body: dict[str, Any] = decode_json(cdrs[0][4], "the CDR")
    assert body["total_energy"] == Decimal(22)
    assert body["cdr_location"]["id"] == "SITE-BILL"
    assert body["start_date_time"] == START.isoformat().replace("+00:00", "Z")
    peak = sum(
        (line["volume"] for line in body["cost_breakdown"] if line["price"] == Decimal("0.50")),
        Decimal(0),
    )
    assert peak in (Decimal("16.5"), Decimal("22"))  # from 17:00 local, winter or summer
    assert reviews == [(str(held), "held")]
    total_incl = next(row[2] for row in cdrs if row[0] == str(paid))
    assert payment == ("captured", total_incl)
    assert total_incl == to_minor(Decimal(str(body["total_cost"]["incl_vat"])), "EUR")


async def test_closed_sessions_become_cdrs_holds_and_captures_once(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    billed, paid, held = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await seed_site_tariff_and_payment(clean_db, paid)
    await produce(
        broker,
        topics.sessions_closed,
        [
            encode_session_closed(closed(billed)),
            encode_session_closed(closed(paid, transaction="2", connector=2)),
            encode_session_closed(closed(held, quality=Quality.CORRECTED)),
            b'{"not": "a session"}',
        ],
    )
    config = InvoicingConfig(kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics)
    await invoice_all(config, 3)
    check_cdrs_and_payment(clean_db, billed, paid, held)
    assert len(list(read_topic(broker.bootstrap, topics.billing_cdrs))) == 2
    assert len(list(read_topic(broker.bootstrap, topics.deadletter))) == 1

    # Everything read again (a new consumer group): nothing new is stored or captured.
    await invoice_all(replace(config, consumer_group="chargeflow-billing-replay"), 3)
    with psycopg.connect(clean_db) as db:
        assert db.execute("SELECT count(*) FROM cdrs").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM billing_reviews").fetchone() == (1,)
        captures = db.execute(
            "SELECT count(*) FROM payment_events WHERE session_id = %s AND kind = 'captured'",
            (str(paid),),
        ).fetchone()
    assert captures == (1,)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


async def test_a_failed_capture_is_retried_by_the_worker_and_captured_once(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, fake: FakeStripe
) -> None:
    stripe = StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5)
    session_id = uuid.uuid4()
    await seed_site_tariff_and_payment(clean_db, uuid.uuid4())
    with ConnectionPool(clean_db, min_size=1, max_size=2) as pool:
        PaymentService(pool, {"stripe": stripe}).preauthorize(
            session_id=str(session_id),
            provider="stripe",
            customer="cus_BILL",
            currency="EUR",
            amount_minor=5000,
            payment_method="pm_card_visa",
        )
    fake.fail_next("500", method="POST", path="/capture")
    await produce(broker, topics.sessions_closed, [encode_session_closed(closed(session_id))])
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        capture_retry_initial_s=0.2,
        capture_retry_max_s=1.0,
        capture_retry_every_s=0.1,
    )

    def payment() -> tuple[str, int, int] | None:
        with psycopg.connect(clean_db) as db:
            row = db.execute(
                "SELECT status, captured_minor, attempts FROM session_payments"
                " WHERE session_id = %s",
                (str(session_id),),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    async with running(InvoicingWorker(config, stripe=stripe, poll_s=0.1)):
        done = await apoll(
            payment, lambda p: p is not None and p[0] == "captured", 60, "the capture retried"
        )
    assert done is not None
    assert done[2] == 1  # one failed attempt before
    assert len(fake.calls("POST", "/capture")) == 2  # the failure, then the capture
    with psycopg.connect(clean_db) as db:
        row = db.execute(
            "SELECT total_incl_minor FROM cdrs WHERE session_id = %s", (str(session_id),)
        ).fetchone()
    assert row is not None
    assert done[1] == row[0]


async def test_a_session_amended_after_its_cdr_is_credited_and_billed_anew(
    clean_db: str,
) -> None:
    await seed_site_tariff_and_payment(clean_db, uuid.uuid4())
    party = CdrParty("NL", "CFL")
    original = closed(uuid.uuid4())
    # A late stop: the session ran 30 minutes longer and delivered 2 kWh more.
    amended = replace_struct(
        original,
        stopped_at=original.started_at + timedelta(hours=2, minutes=30),
        closed_at=original.started_at + timedelta(hours=3),
        energy_wh=24_000,
        meter_stop_wh=524_000,
    )
    same_again = replace_struct(amended, closed_at=amended.closed_at + timedelta(minutes=5))
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        first = await invoice_session(conn, original, party)
        second = await invoice_session(conn, amended, party)
        for replayed in (original, amended, same_again):  # replays and a close that changes nothing
            await invoice_session(conn, replayed, party)
    assert first.cdr is not None
    assert second.cdr is not None
    assert second.credit is not None
    assert second.credit["credit_reference_id"] == first.cdr["id"]
    assert second.cdr["id"] == first.cdr["id"] + "-2"
    with psycopg.connect(clean_db) as db:
        rows = db.execute(
            "SELECT cdr_id, credit, total_excl_minor FROM cdrs WHERE session_id = %s"
            " ORDER BY cdr_id",
            (original.session_id,),
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        (first.cdr["id"], False),
        (first.cdr["id"] + "-2", False),
        (first.cdr["id"] + "-C", True),
    ]
    assert sum(r[2] for r in rows) == rows[1][2]  # the first and its credit cancel out
    assert second.cdr["total_energy"] == Decimal(24)


async def test_the_worker_serves_its_health_and_metrics_while_it_runs(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics, http_port=0
    )
    worker = InvoicingWorker(config, poll_s=0.1)
    assert worker.health is not None
    async with running(worker), httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{worker.health.bind()}"

        async def ready() -> int:
            try:
                return (await client.get(f"{base}/readyz")).status_code
            except httpx.TransportError:
                return 0

        await apoll_async(ready, lambda status: status == 200, 30, "the worker ready")
        body = (await client.get(f"{base}/readyz")).json()
        assert body["checks"]["database"]["ok"] is True
        assert (await client.get(f"{base}/livez")).status_code == 200
        assert "process_cpu_seconds_total" in (await client.get(f"{base}/metrics")).text
    # stopped with the worker
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"{base}/livez", timeout=2)
