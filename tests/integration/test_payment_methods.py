"""Payment methods per id tag and the pre-authorisation at an authorised start, on the real
database and broker, with the real Stripe SDK against the local Stripe server:

- the API (roles billing and admin): set, replace, read and remove an id tag's method;
  a Stripe method needs its ``pm_...``, a wallet or postpaid one takes none;
- the billing worker holds the estimate (the tariff's max_price when lower) for every
  active session whose id tag has a method, once: a second worker run makes no provider
  call; a declined card or an empty wallet is recorded as failed; Stripe unavailable is
  not called again in the same pass; a session without a tariff or a payment method is
  left alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from msgspec.structs import replace as replace_struct

from billing.payments.stripe import StripeProvider
from bus.sessions import encode_session_closed
from chargeflow.stack import EmbeddedBroker
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import ledger
from store import payment_methods as method_store
from store import tariffs as tariff_store
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth, insert_session
from tests.support.billing import component, element, tariff_json
from tests.support.billing_worker import (
    START,
    assign_tariff,
    closed,
    produce,
    running,
    seed_site_tariff_and_payment,
)
from tests.support.fake_stripe import FakeStripe, fake_stripe
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

METHOD = "/v1/id-tags/{}/payment-method"
STRIPE = {"provider": "stripe", "customer": "cus_ALICE", "payment_method": "pm_card_visa"}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


async def test_set_replace_read_and_remove_an_id_tags_payment_method(
    clean_db: str, keys: dict[str, str]
) -> None:
    path = METHOD.format("TAG-7")
    async with api_client(clean_db) as client:
        for role in ("operator", "maintenance", "public"):
            denied = await client.put(path, json=STRIPE, headers=auth(keys[role]))
            assert_problem(denied, 403)
        assert_problem(await client.get(path), 401)
        assert_problem(await client.get(path, headers=auth(keys["billing"])), 404)
        made = await client.put(path, json=STRIPE, headers=auth(keys["billing"]))
        assert made.status_code == 200, made.text
        assert made.json() | {"created_at": None, "updated_at": None} == {
            "id_tag": "TAG-7",
            **STRIPE,
            "created_at": None,
            "updated_at": None,
        }
        wallet = {"provider": "wallet", "customer": "alice"}
        replaced = await client.put(path, json=wallet, headers=auth(keys["admin"]))
        assert (replaced.json()["provider"], replaced.json()["payment_method"]) == ("wallet", None)
        assert replaced.json()["created_at"] == made.json()["created_at"]
        assert replaced.json()["updated_at"] > made.json()["updated_at"]
        seen = await client.get(path, headers=auth(keys["billing"]))
        assert seen.json() == replaced.json()
        for body in (
            {"provider": "stripe", "customer": "cus_ALICE"},  # no pm_...
            {**STRIPE, "payment_method": "card 4242"},
            {"provider": "wallet", "customer": "alice", "payment_method": "pm_card_visa"},
            {"provider": "wallet", "customer": "al\u0000ice"},
            {"provider": "postpaid", "customer": ""},
            {"provider": "cash", "customer": "alice"},
        ):
            refused = await client.put(path, json=body, headers=auth(keys["billing"]))
            assert_problem(refused, 422)
        assert_problem(
            await client.get(METHOD.format("TAG%01"), headers=auth(keys["billing"])), 422
        )
        for _ in range(2):  # removing is idempotent
            gone = await client.delete(path, headers=auth(keys["billing"]))
            assert gone.status_code == 204
        assert_problem(await client.get(path, headers=auth(keys["billing"])), 404)
    async with await psycopg.AsyncConnection.connect(clean_db) as conn:
        assert await method_store.list_methods(conn) == []


# ------------------------------------------------------------------ pre-authorisation

NOW = datetime.now(UTC)
CAPPED = tariff_json(
    element(component("ENERGY", "0.40")),
    id="CAPPED",
    max_price={"excl_vat": "16.53", "incl_vat": "20.00"},
)
STANDARD = tariff_json(element(component("ENERGY", "0.35")), id="STANDARD", currency="EUR")
# id tag -> (provider, customer, payment method); TAG-NONE has none.
METHODS: dict[str, tuple[method_store.Provider, str, str | None]] = {
    "TAG-WALLET": ("wallet", "alice", None),
    "TAG-EMPTY": ("wallet", "bob", None),  # no top-up: declined
    "TAG-CARD": ("stripe", "cus_CAROL", "pm_card_visa"),
    "TAG-DECLINED": ("stripe", "cus_DAVE", "pm_card_chargeDeclined"),
    "TAG-CAPPED": ("wallet", "alice", None),
}


async def seed(url: str) -> dict[str, str]:
    """Stations on a site with the standard tariff, one with a capped tariff, one with
    none; an active session per id tag; alice's wallet topped up. Session ids by tag."""
    upsert_site(url, "SITE-PA", "Depot", 100_000, time_zone="Europe/Amsterdam")
    for station in ("CP-PA-1", "CP-PA-CAP"):
        provision_station(url, station, "SITE-PA")
    provision_station(url, "CP-PA-NOTARIFF")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for body, scope, target in (
            (STANDARD, tariff_store.Scope.SITE, "SITE-PA"),
            (CAPPED, tariff_store.Scope.STATION, "CP-PA-CAP"),
        ):
            await assign_tariff(conn, body, scope, target, NOW - timedelta(days=1))
        for tag, (provider, customer, method) in METHODS.items():
            await method_store.set_method(conn, tag, provider, customer, method)
    sessions: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as db:
        # Oldest first: the one that stays waiting (no tariff) must not hold up the rest.
        plan = [("CP-PA-NOTARIFF", "TAG-CARD")]
        plan += [*(("CP-PA-1", tag) for tag in METHODS if tag != "TAG-CAPPED")]
        plan += [("CP-PA-1", "TAG-NONE"), ("CP-PA-CAP", "TAG-CAPPED")]
        for connector, (station, tag) in enumerate(plan, start=1):
            row = insert_session(
                db,
                charge_point_id=station,
                connector_id=connector,
                id_tag=tag,
                status="active",
                started_at=datetime.now(UTC) + timedelta(seconds=connector),
                meter_stop_wh=None,
                energy_wh=None,
            )
            key = tag if station != "CP-PA-NOTARIFF" else "NOTARIFF"
            sessions[key] = str(row["session_id"])
        ledger.top_up(db, "alice", 8000, "EUR", reference="bank-1", idempotency_key="top-up-1")
    return sessions


def payments(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT session_id, provider, customer, currency, status, authorized_minor,"
            " reference, last_error, updated_at FROM session_payments"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


async def test_the_worker_preauthorises_active_sessions_once(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Any,
    fake: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("invoicing.preauth.PAGE", 2)  # a pass goes through several pages
    sessions = await seed(clean_db)
    stripe = StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5)
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics, preauth_poll_s=0.1
    )
    # Stripe answers the first pass's first call with a 500: that pass calls it no more
    # (the declined card's session waits), the next pass makes both holds.
    fake.fail_next("500", method="POST", path="/v1/payment_intents")
    async with running(InvoicingWorker(config, stripe=stripe, poll_s=0.1)):
        first = await apoll(
            lambda: payments(clean_db), lambda p: len(p) >= len(METHODS), 30, "pre-authorisations"
        )
    by_tag = {tag: first[sessions[tag]] for tag in METHODS}
    assert by_tag["TAG-WALLET"][:5] == ("wallet", "alice", "EUR", "authorized", 5000)
    assert by_tag["TAG-CAPPED"][:5] == ("wallet", "alice", "EUR", "authorized", 2000)
    assert by_tag["TAG-CARD"][:5] == ("stripe", "cus_CAROL", "EUR", "authorized", 5000)
    assert by_tag["TAG-EMPTY"][3] == "failed"
    assert by_tag["TAG-DECLINED"][3] == "failed"
    assert "card_declined" in by_tag["TAG-DECLINED"][6]
    assert sessions["TAG-NONE"] not in first  # no payment method
    assert sessions["NOTARIFF"] not in first  # no tariff applies: nothing to price a hold in
    created = fake.calls("POST", "/v1/payment_intents")
    card, declined = (f"authorize:{sessions[tag]}" for tag in ("TAG-CARD", "TAG-DECLINED"))
    assert [c.idempotency_key for c in created] == [card, card, declined]
    intent = fake.intents[by_tag["TAG-CARD"][5]]
    assert (intent["amount"], intent["capture_method"], intent["status"]) == (
        5000,
        "manual",
        "requires_capture",
    )
    assert created[0].params["off_session"] == "true"  # the card on file, driver not present
    with psycopg.connect(clean_db) as db:
        assert ledger.balance(db, "alice", "EUR").held_minor == 7000
        assert ledger.balance(db, "alice", "EUR").available_minor == 1000

    # A restarted worker finds every session handled: no provider call, nothing changed.
    worker = InvoicingWorker(config, stripe=stripe, poll_s=0.1)
    async with running(worker):
        await apoll(
            lambda: worker.preauthorizer.passes if worker.preauthorizer else 0,
            lambda n: n >= 3,
            30,
            "three pre-authorisation passes",
        )
    assert worker.preauthorizer is not None
    assert worker.preauthorizer.authorized == 0
    assert payments(clean_db) == first
    assert len(fake.calls("POST", "/v1/payment_intents")) == 3
    with psycopg.connect(clean_db) as db:
        assert ledger.balance(db, "alice", "EUR").held_minor == 7000
        assert ledger.reconcile(db).ok


async def test_a_session_closed_before_its_preauthorisation_is_authorised_and_captured_at_close(
    broker: EmbeddedBroker, clean_db: str, topics: Any
) -> None:
    """Shorter than a pre-authorisation pass (or the worker was down): its final cost is
    authorised and captured when it is billed, if its id tag had a payment method when it
    started; a method added after the start does not make it payable."""
    await seed_site_tariff_and_payment(clean_db, uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        await method_store.set_method(conn, "TAG-SHORT", "wallet", "alice", None)
        await method_store.set_method(conn, "TAG-LATER", "wallet", "alice", None)
        await conn.execute(
            "UPDATE payment_methods SET created_at = %s WHERE id_tag = 'TAG-LATER'",
            (START + timedelta(minutes=1),),
        )
    with psycopg.connect(clean_db, autocommit=True) as db:
        ledger.top_up(db, "alice", 10_000, "EUR", reference="bank-1", idempotency_key="t-1")
    short, later = uuid.uuid4(), uuid.uuid4()
    await produce(
        broker,
        topics.sessions_closed,
        [
            encode_session_closed(replace_struct(closed(short), id_tag="TAG-SHORT")),
            encode_session_closed(
                replace_struct(closed(later, transaction="2", connector=2), id_tag="TAG-LATER")
            ),
        ],
    )
    config = InvoicingConfig(kafka_bootstrap=broker.bootstrap, database_url=clean_db, topics=topics)
    async with running(InvoicingWorker(config, poll_s=0.1)) as worker:
        await apoll(lambda: worker.invoiced, lambda n: n >= 2, 60, "both billed")
    paid = payments(clean_db)
    assert str(later) not in paid
    with psycopg.connect(clean_db) as db:
        totals: dict[str, int] = dict(
            db.execute("SELECT session_id, total_incl_minor FROM cdrs").fetchall()
        )
        alice = ledger.balance(db, "alice", "EUR")
        assert ledger.reconcile(db).ok
    total = totals[str(short)]
    assert paid[str(short)][:5] == ("wallet", "alice", "EUR", "captured", total)
    assert (alice.available_minor, alice.held_minor) == (10_000 - total, 0)
