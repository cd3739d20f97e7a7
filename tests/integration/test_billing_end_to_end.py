"""Billing end to end, on the real broker and database (issue 11's acceptance):

simulated charge points -> OCPP gateway -> Kafka -> sessions flow (a real Bytewax
process) -> PostgreSQL and ``sessions.closed`` -> billing worker (in this process, Stripe
through the real SDK against the local Stripe server) -> CDRs, pre-authorisations at
start and captures at close; the API's Stripe webhook and capture endpoint.

A small fleet charges under the demo time-of-use tariff (``CFL-DEMO``: peak energy from
17:00 in the site's zone; the station clocks start just before) with id tags paying by
wallet, by Stripe card, or not at all. Checked:

- every exact session has exactly one CDR, billed to its payment method's customer;
- every paid session was pre-authorised while active (seen so by a watcher polling the
  database during the run) and captured once for its CDR's total incl. VAT;
- wallet balances are the top-up minus the captures, to the cent, and the ledger
  reconciles; Stripe's intents received exactly the CDR totals;
- a session whose energy is not exact is held, not billed (the healthy simulated fleet
  makes none: one with a register reset is published on the OCPP topic beside it);
- replaying every topic (the sessions flow over all OCPP events, then billing over all
  of ``sessions.closed`` with a fresh consumer group), then delivering every webhook
  event Stripe sent and redelivering each twice, changes nothing;
- 50 concurrent capture requests (POSTs to the API) for a session whose first capture
  failed capture once. (50 concurrent captures of one payment through the service, on
  Stripe and on the wallet: test_payments_service.py.)
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from api.payments import PaymentsSetup
from billing.money import to_minor
from billing.payments.stripe import StripeProvider, verify_webhook
from billing.preview import decode_json
from bus.admin import read_topic
from bus.envelope import encode_envelope
from bus.topics import Topics
from chargeflow.launcher import seed_demo_tariff
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import ledger
from store import payment_methods as method_store
from store.api_keys import create_api_key
from store.id_tokens import add_id_tag
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client
from tests.support.billing_worker import running
from tests.support.fake_stripe import FakeStripe, fake_stripe
from tests.support.flows import FLOW_ARGV, flow_env, flow_process, publish
from tests.support.gateway import STATION_PASSWORD
from tests.support.paths import ROOT
from tests.support.polling import apoll
from tests.support.sessions import meter, register
from tests.support.sessions import start as ocpp_start
from tests.support.sessions import stop as ocpp_stop

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Europe/Amsterdam")
STATIONS = 4
SESSIONS_PER_STATION = 2
TOP_UP = 20_000  # minor units per wallet
WEBHOOK_SECRET = "whsec_test_billing_e2e_0123456789"
CONCURRENT = 50
# id tag -> (provider, customer, Stripe payment method); E2B-N-0 has no payment method.
METHODS: dict[str, tuple[method_store.Provider, str, str | None]] = {
    **{f"E2B-W-{n}": ("wallet", f"wallet-{n}", None) for n in range(3)},
    **{f"E2B-S-{n}": ("stripe", f"cus_E2B{n}", "pm_card_visa") for n in range(3)},
}
ID_TAGS = (*METHODS, "E2B-N-0")
HELD_STATION = "E2B-HELD"


def clock_start() -> datetime:
    """The station clocks' start: the next 16:50 in the site's zone (the peak begins at
    17:00), at least a minute from now so that the tariff is older than every session."""
    now = datetime.now(UTC) + timedelta(minutes=1)
    local = now.astimezone(ZONE)
    start = datetime.combine(local.date(), time(16, 50), ZONE)
    if start < local:
        start = datetime.combine(local.date() + timedelta(days=1), time(16, 50), ZONE)
    return start.astimezone(UTC)


def held_session(start: datetime) -> list[tuple[bytes, bytes]]:
    """A station's session whose register resets half-way (a reboot): its energy is
    ``corrected``, so billing holds it for a clerk."""
    minute = timedelta(minutes=1)
    events = [
        ocpp_start(HELD_STATION, 7001, 50_000, id_tag="E2B-N-0", at=start),
        meter(HELD_STATION, 7001, register(start + 5 * minute, 52_000)),
        meter(HELD_STATION, 7001, register(start + 10 * minute, 300)),
        ocpp_stop(HELD_STATION, 7001, 1_500, at=start + 15 * minute),
    ]
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in events]


def fleet(gateway_url: str) -> FleetConfig:
    return FleetConfig(
        gateway_url=gateway_url,
        stations=STATIONS,
        sessions_per_station=SESSIONS_PER_STATION,
        station_id_prefix="E2B-",
        id_tags=ID_TAGS,
        seed=11,
        station_password=STATION_PASSWORD,
        meter_interval_s=120.0,
        time_scale=150.0,
        mean_dwell_s=3000.0,
        mean_arrival_gap_s=200.0,
        start=clock_start(),
    )


async def seed(url: str) -> None:
    upsert_site(url, "SITE-E2B", "Depot", 200_000, time_zone="Europe/Amsterdam")
    for n in range(1, STATIONS + 1):
        provision_station(url, f"E2B-{n:04d}", "SITE-E2B", password=STATION_PASSWORD)
    for tag in ID_TAGS:
        add_id_tag(url, tag)
    await asyncio.to_thread(seed_demo_tariff, url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for tag, (provider, customer, method) in METHODS.items():
            await method_store.set_method(conn, tag, provider, customer, method)
    with psycopg.connect(url, autocommit=True) as db:
        for tag, (provider, customer, _) in METHODS.items():
            if provider == "wallet":
                ledger.top_up(
                    db, customer, TOP_UP, "EUR", reference=f"bank-{tag}", idempotency_key=tag
                )


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


@pytest.fixture
def sessions_flow(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, tmp_path: Any
) -> Iterator[subprocess.Popen[bytes]]:
    with flow_process(
        FLOW_ARGV, flow_env(broker.bootstrap, clean_db, topics, tail=True), tmp_path / "flow.log"
    ) as process:
        yield process


@asynccontextmanager
async def watching_preauths(url: str) -> AsyncIterator[set[str]]:
    """The sessions seen active with an authorised payment in one snapshot, while the
    fleet runs."""
    seen: set[str] = set()
    stop = asyncio.Event()

    def look() -> None:
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT s.session_id::text FROM sessions s JOIN session_payments p"
                " ON p.session_id = s.session_id::text"
                " WHERE s.status = 'active' AND p.status = 'authorized'"
            ).fetchall()
        seen.update(row[0] for row in rows)

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.to_thread(look)
            await asyncio.sleep(0.05)  # the watcher's pace, not a synchronisation

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        stop.set()
        await task


def closed_sessions(url: str) -> list[tuple[str, str | None, str]]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT session_id::text, id_tag, quality FROM sessions"
            " WHERE status = 'closed' AND charge_point_id LIKE 'E2B-%' ORDER BY session_id"
        ).fetchall()
    return [(str(r[0]), r[1], str(r[2])) for r in rows]


def snapshot(url: str, fake: FakeStripe) -> dict[str, Any]:
    """Everything billing decided: CDRs, reviews, payments (without their timestamps),
    their log, the ledger, and what Stripe holds and was asked to capture."""
    with psycopg.connect(url) as db:
        wallets = sorted(c for p, c, _ in METHODS.values() if p == "wallet")
        return {
            "cdrs": db.execute(
                "SELECT cdr_id, session_id, credit, customer, total_incl_minor, body::text"
                " FROM cdrs ORDER BY cdr_id"
            ).fetchall(),
            "reviews": db.execute(
                "SELECT session_id, status FROM billing_reviews ORDER BY session_id"
            ).fetchall(),
            "payments": db.execute(
                "SELECT session_id, provider, customer, currency, reference, status,"
                " authorized_minor, captured_minor, refunded_minor, final_cost_minor,"
                " shortfall_minor, attempts, flagged FROM session_payments ORDER BY session_id"
            ).fetchall(),
            "captured_events": db.execute(
                "SELECT session_id, count(*) FROM payment_events WHERE kind = 'captured'"
                " GROUP BY session_id ORDER BY session_id"
            ).fetchall(),
            "postings": db.execute("SELECT count(*) FROM ledger_postings").fetchone(),
            "balances": [ledger.balance(db, c, "EUR") for c in wallets],
            "reconciled": ledger.reconcile(db).ok,
            "stripe_captures": len(fake.calls("POST", "/capture")),
            "intents": sorted(
                (i["id"], i["status"], i["amount_received"]) for i in fake.intents.values()
            ),
        }


def check_billing(url: str, fake: FakeStripe, preauthorised_while_active: set[str]) -> None:
    sessions = closed_sessions(url)
    state = snapshot(url, fake)
    cdrs = {row[1]: row for row in state["cdrs"] if not row[2]}
    assert not [row for row in state["cdrs"] if row[2]]  # no credit: nothing was amended
    exact = {sid for sid, _, quality in sessions if quality == "exact"}
    assert set(cdrs) == exact  # one CDR per exact session (cdr ids are per session)
    held = {s for s, _, q in sessions if q != "exact"}
    assert len(held) == 1  # the session with a register reset
    assert {row[0] for row in state["reviews"]} == held
    payments = {row[0]: row for row in state["payments"]}
    captured_events = dict(state["captured_events"])
    tags = {sid: tag or "" for sid, tag, _ in sessions}
    captured_per_wallet: dict[str, int] = {}
    for sid in exact:
        tag = tags[sid]
        cdr = cdrs[sid]
        body = decode_json(cdr[5], "the CDR")
        total = to_minor(body["total_cost"]["incl_vat"], "EUR")
        assert cdr[4] == total
        if tag not in METHODS:
            assert sid not in payments
            assert cdr[3] == tag  # billed to the id tag itself
            continue
        provider, customer, _ = METHODS[tag]
        assert cdr[3] == customer
        assert sid in preauthorised_while_active, (sid, tag)
        payment = payments[sid]
        assert payment[1:4] == (provider, customer, "EUR")
        assert payment[5:8] == ("captured", 5000, total), payment
        assert payment[10] == 0  # no shortfall: the estimate covered every session
        assert captured_events[sid] == 1
        if provider == "stripe":
            intent = fake.intents[payment[4]]
            assert (intent["status"], intent["amount_received"]) == ("succeeded", total)
        else:
            captured_per_wallet[customer] = captured_per_wallet.get(customer, 0) + total
    assert {METHODS[tags[s]][0] for s in exact if tags[s] in METHODS} == {"wallet", "stripe"}
    for balance in state["balances"]:
        assert balance.held_minor == 0
        assert balance.available_minor == TOP_UP - captured_per_wallet.get(balance.customer, 0)
    assert state["reconciled"]
    # Peak and off-peak energy were both billed (the time-of-use tariff at work).
    prices = {
        str(line["price"])
        for row in cdrs.values()
        for line in decode_json(row[5], "the CDR")["cost_breakdown"]
    }
    assert {"0.49", "0.35"} <= prices, prices


async def test_billing_end_to_end(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    gateway: Gateway,
    sessions_flow: subprocess.Popen[bytes],
    fake: FakeStripe,
) -> None:
    await seed(clean_db)
    stripe = StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5)
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        preauth_poll_s=0.1,
        capture_retry_initial_s=600.0,  # the failed capture below waits for the API
        capture_retry_max_s=600.0,
    )
    fake.fail_next("500", method="POST", path="/capture")  # the first Stripe capture fails
    worker = InvoicingWorker(config, stripe=stripe, poll_s=0.1)
    held = held_session(clock_start())
    await asyncio.to_thread(publish, broker.bootstrap, topics.ocpp_events, held)
    async with running(worker), watching_preauths(clean_db) as preauthorised:
        report = await asyncio.wait_for(run_fleet(fleet(gateway.url)), timeout=120)
        assert len(report.sessions) == STATIONS * SESSIONS_PER_STATION
        closes = len(report.sessions) + 1  # and the held one
        await apoll(lambda: len(closed_sessions(clean_db)), lambda n: n == closes, 60, "all closed")
        await apoll(lambda: worker.invoiced, lambda n: n >= closes, 60, "billed or held")
    failed = await capture_concurrently(clean_db, fake)
    check_billing(clean_db, fake, preauthorised)
    assert len(fake.calls("POST", f"/{failed}/capture")) == 2  # the failure, then one capture

    before = snapshot(clean_db, fake)
    replayed = await replay_every_topic(
        broker, clean_db, topics, replace(config, consumer_group="e2e-replay"), stripe
    )
    assert replayed >= closes
    assert snapshot(clean_db, fake) == before
    await redeliver_webhooks(clean_db, fake, before)
    shortest = min(
        datetime.fromisoformat(t.stopped_at) - datetime.fromisoformat(t.started_at)
        for t in report.sessions
    )
    print(
        f"billing e2e: {len(report.sessions)} sessions (shortest "
        f"{shortest.total_seconds() / fleet('').time_scale:.1f} s real), "
        f"{len(before['cdrs'])} CDRs, payments {[(p[1], p[7]) for p in before['payments']]}, "
        f"{replayed} sessions.closed messages replayed, "
        f"{len(fake.events)} Stripe events delivered and redelivered twice"
    )


async def replay_every_topic(
    broker: EmbeddedBroker,
    url: str,
    topics: Topics,
    config: InvoicingConfig,
    stripe: StripeProvider,
) -> int:
    """The sessions flow over all OCPP events (a run to the end), then a billing worker
    with a fresh consumer group over all of sessions.closed; how many closes it read."""
    flow_replay = await asyncio.to_thread(
        subprocess.run,
        FLOW_ARGV,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env=flow_env(broker.bootstrap, url, topics, tail=False),
    )
    assert flow_replay.returncode == 0, flow_replay.stderr[-3000:]
    closes = len(list(read_topic(broker.bootstrap, topics.sessions_closed)))
    replay = InvoicingWorker(config, stripe=stripe)
    async with running(replay):
        await apoll(lambda: replay.invoiced, lambda n: n >= closes, 60, "the replay")
    return closes


def payments_setup(fake: FakeStripe) -> PaymentsSetup:
    return PaymentsSetup(
        stripe=StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5),
        verify_stripe_webhook=functools.partial(verify_webhook, secret=WEBHOOK_SECRET),
    )


async def capture_concurrently(url: str, fake: FakeStripe) -> str:
    """The session whose first capture failed (its retry is 10 minutes away), captured by
    50 concurrent POSTs to the API: one capture. Its PaymentIntent's id."""
    with psycopg.connect(url) as db:
        waiting = db.execute(
            "SELECT p.session_id, p.reference, c.total_incl_minor FROM session_payments p"
            " JOIN cdrs c ON c.session_id = p.session_id AND NOT c.credit"
            " WHERE p.status = 'authorized' AND p.attempts = 1"
        ).fetchall()
    assert len(waiting) == 1, waiting
    ((session_id, reference, total),) = waiting
    key = create_api_key(url, "e2e-billing", "billing")
    async with api_client(url, payments=payments_setup(fake)) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/sessions/{session_id}/payment/capture",
                    json={"amount_minor": total},
                    headers={"X-API-Key": key},
                )
                for _ in range(CONCURRENT)
            )
        )
    assert {(a.status_code, a.json()["status"], a.json()["captured_minor"]) for a in answers} == {
        (200, "captured", total)
    }
    return str(reference)


def payment_log(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as db:
        return (
            db.execute("SELECT * FROM session_payments ORDER BY session_id").fetchall(),
            db.execute("SELECT * FROM payment_events ORDER BY event_id").fetchall(),
        )


async def redeliver_webhooks(url: str, fake: FakeStripe, billed: dict[str, Any]) -> None:
    """Every event Stripe sent, delivered, then redelivered twice: the deliveries agree
    with what billing holds (nothing changes), each is logged once, and the redeliveries
    change nothing at all."""
    events = list(fake.events)
    kinds = {event["type"] for event in events}
    assert {"payment_intent.amount_capturable_updated", "payment_intent.succeeded"} <= kinds

    async def deliver(client: httpx.AsyncClient) -> None:
        for event in events:
            body, signature = fake.signed(event, WEBHOOK_SECRET)
            answer = await client.post(
                "/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            assert answer.status_code == 204, answer.text

    async with api_client(url, payments=payments_setup(fake)) as client:
        await deliver(client)
        assert snapshot(url, fake) == billed
        delivered = payment_log(url)
        webhook_rows = [e for e in delivered[1] if str(e[3]).startswith("webhook:")]
        assert len(webhook_rows) == len(events)  # every event is about a session's intent
        for _ in range(2):
            await deliver(client)
    assert payment_log(url) == delivered
    assert snapshot(url, fake) == billed
