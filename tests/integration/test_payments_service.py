"""A session's payment end to end on the real database, with the real Stripe SDK against
a local server speaking Stripe's API and with the real wallet ledger: captured at most
once under 50 concurrent requests, replays and a lost answer; a failed capture retried
and then flagged; a shortfall flagged; refunds never above the capture; a redelivered
webhook applied once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from billing.payments.provider import PaymentProvider
from billing.payments.service import PaymentService, PaymentStateError
from billing.payments.stripe import StripeProvider
from billing.payments.wallet import WalletProvider
from runtime.retry import Backoff
from store import ledger
from tests.support.fake_stripe import FakeStripe, fake_stripe

pytestmark = pytest.mark.integration

SESSION = "5e0c1f7a-9b1d-4c0e-8e7f-1a2b3c4d5e6f"
THREADS = 50


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


@pytest.fixture
def pool(clean_db: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(clean_db, min_size=2, max_size=THREADS + 5, open=True) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(pool: ConnectionPool[Any], fake: FakeStripe, clock: Clock) -> PaymentService:
    providers: dict[str, PaymentProvider] = {
        "stripe": StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5),
        "wallet": WalletProvider(pool),
    }
    return PaymentService(
        pool, providers, max_attempts=3, backoff=Backoff(60.0, 600.0), clock=clock
    )


def preauthorize(service: PaymentService, provider: str = "stripe", amount: int = 3000) -> None:
    service.preauthorize(
        session_id=SESSION,
        provider=provider,
        customer="cus_ALICE" if provider == "stripe" else "alice",
        currency="EUR",
        amount_minor=amount,
        payment_method="pm_card_visa" if provider == "stripe" else None,
    )


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_fifty_concurrent_captures_capture_once_on_stripe(
    service: PaymentService, fake: FakeStripe
) -> None:
    preauthorize(service)
    results = all_at_once([lambda: service.capture(SESSION, 2345)] * THREADS)
    assert {(r.status, r.captured_minor) for r in results} == {("captured", 2345)}
    captures = fake.calls("POST", "/capture")
    assert len(captures) == 1
    assert captures[0].idempotency_key == f"capture:{SESSION}"
    replay = service.capture(SESSION, 2345)  # a replayed sessions.closed
    assert replay.captured_minor == 2345
    assert len(fake.calls("POST", "/capture")) == 1


def test_fifty_concurrent_captures_capture_once_on_the_wallet(
    service: PaymentService, pool: ConnectionPool[Any]
) -> None:
    with pool.connection() as conn:
        ledger.top_up(conn, "alice", 5000, "EUR", reference="top-up-1", idempotency_key="t-1")
    preauthorize(service, "wallet", 3000)
    all_at_once([lambda: service.capture(SESSION, 1234)] * THREADS)
    with pool.connection() as conn:
        balance = ledger.balance(conn, "alice", "EUR")
        assert ledger.reconcile(conn).ok
    assert balance.available_minor == 5000 - 1234
    assert balance.held_minor == 0


def test_an_answer_lost_after_the_capture_ran_is_retried_with_the_same_key(
    service: PaymentService, fake: FakeStripe, clock: Clock
) -> None:
    preauthorize(service)
    fake.fail_next("drop_after", method="POST", path="/capture")  # Stripe captured; we never heard
    failed = service.capture(SESSION, 2000)
    assert (failed.status, failed.attempts) == ("authorized", 1)
    assert failed.next_attempt_at is not None
    assert service.retry_due() == []  # not due yet
    clock.now = failed.next_attempt_at
    [done] = service.retry_due()
    assert (done.status, done.captured_minor, done.next_attempt_at) == ("captured", 2000, None)
    keys = {c.idempotency_key for c in fake.calls("POST", "/capture")}
    assert keys == {f"capture:{SESSION}"}
    intent = fake.intents[done.reference or ""]
    assert intent["amount_received"] == 2000


def test_a_capture_failing_every_time_is_flagged_for_billing(
    service: PaymentService, fake: FakeStripe, clock: Clock
) -> None:
    preauthorize(service)
    for _ in range(3):
        fake.fail_next("500", method="POST", path="/capture")
        row = service.capture(SESSION, 2000)
        if row.next_attempt_at is not None:
            clock.now = row.next_attempt_at + timedelta(seconds=1)
    assert row.attempts == 3
    assert row.flagged is not None
    assert row.flagged.startswith("capture failed")
    assert row.next_attempt_at is None
    assert [p.session_id for p in service.flagged()] == [SESSION]
    assert service.capture(SESSION, 2000).status == "authorized"  # left for billing


def test_a_cost_above_the_authorisation_is_captured_to_it_and_flagged(
    service: PaymentService,
) -> None:
    preauthorize(service, amount=1500)
    row = service.capture(SESSION, 1800)
    assert (row.captured_minor, row.shortfall_minor) == (1500, 300)
    assert row.flagged is not None
    assert "above the authorisation by 300" in row.flagged


def test_refunds_never_exceed_the_capture_and_a_retried_refund_refunds_once(
    service: PaymentService, fake: FakeStripe
) -> None:
    preauthorize(service)
    service.capture(SESSION, 2000)
    first = service.refund(SESSION, 500, actor="clerk", reason="charger fault", key="r-1")
    again = service.refund(SESSION, 500, actor="clerk", reason="charger fault", key="r-1")
    assert first.refunded_minor == again.refunded_minor == 500
    second = service.refund(SESSION, 1500, actor="clerk", reason="the rest", key="r-2")
    assert second.refunded_minor == 2000
    with pytest.raises(PaymentStateError, match="exceed the capture"):
        service.refund(SESSION, 1, actor="clerk", reason="too much", key="r-3")
    # A full refund whose request is retried is the same refund, not "above the capture".
    assert service.refund(SESSION, 1500, actor="clerk", reason="the rest", key="r-2") == second
    refunds = fake.calls("POST", "/v1/refunds")
    assert [r.idempotency_key for r in refunds] == [
        f"refund:{SESSION}:r-1",
        f"refund:{SESSION}:r-2",
    ]
    found = service.history(SESSION)
    assert found is not None
    kinds = [e.kind for e in found[1]]
    assert kinds == ["authorized", "captured", "refunded", "refunded"]


def test_cancel_releases_the_hold_and_a_redelivered_webhook_is_applied_once(
    service: PaymentService,
) -> None:
    preauthorize(service)
    row = service.cancel(SESSION, actor="operator", reason="start failed")
    assert row.status == "canceled"
    assert row.reference is not None
    assert service.apply_webhook("stripe", "evt_1", "payment_intent.canceled", row.reference)
    assert not service.apply_webhook("stripe", "evt_1", "payment_intent.canceled", row.reference)
    assert not service.apply_webhook("stripe", "evt_2", "payment_intent.canceled", "pi_unknown")
    with pytest.raises(PaymentStateError, match="canceled, not authorised"):
        service.capture(SESSION, 100)


def test_a_declined_preauthorisation_fails_and_is_not_retried(
    service: PaymentService, fake: FakeStripe
) -> None:
    service.preauthorize(
        session_id=SESSION,
        provider="stripe",
        customer="cus_BOB",
        currency="EUR",
        amount_minor=3000,
        payment_method="pm_card_chargeDeclined",
    )
    row = service.get(SESSION)
    assert row is not None
    assert row.status == "failed"
    again = service.preauthorize(
        session_id=SESSION,
        provider="stripe",
        customer="cus_BOB",
        currency="EUR",
        amount_minor=3000,
        payment_method="pm_card_chargeDeclined",
    )
    assert again.status == "failed"
    assert len(fake.calls("POST", "/v1/payment_intents")) == 1
