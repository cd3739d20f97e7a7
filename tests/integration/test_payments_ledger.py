"""The wallet and postpaid providers on the real ledger (store.ledger, migration 0014):
amounts to the cent through top-up, hold, capture, release and refund; declines that
change nothing; concurrent holds and captures from threads that never overdraw and
capture once; replays that return the first outcome; the database's own guards
(balanced postings, append-only postings, wallets never below 0); the postpaid monthly
statement. Every test ends with a clean :func:`store.ledger.reconcile`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from billing.payments.postpaid import PostpaidProvider
from billing.payments.provider import (
    CaptureResult,
    InvalidPaymentRequest,
    Payment,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentStatus,
    PaymentUnavailable,
)
from billing.payments.wallet import WalletProvider
from store import ledger

pytestmark = pytest.mark.integration

T = TypeVar("T")
THREADS = 50


@pytest.fixture
def pool(clean_db: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(clean_db, min_size=2, max_size=20, open=True) as opened:
        yield opened


@pytest.fixture
def wallet(pool: ConnectionPool[Any]) -> WalletProvider:
    return WalletProvider(pool)


def assert_reconciles(pool: ConnectionPool[Any]) -> None:
    with pool.connection() as conn:
        found = ledger.reconcile(conn)
    assert found.ok, found


def authorize(
    provider: PaymentProvider, session: str, amount_minor: int, *, customer: str = "alice"
) -> str:
    return provider.authorize(
        session_id=session,
        customer=customer,
        amount_minor=amount_minor,
        currency="EUR",
        payment_method=None,
        idempotency_key=f"authorize:{session}",
    ).reference


def all_at_once(calls: list[Callable[[], T]]) -> list[T | PaymentError]:
    """Run ``calls`` on one thread each, released together by a barrier; each call's
    result or PaymentError."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | PaymentError:
        barrier.wait(timeout=30)
        try:
            return call()
        except PaymentError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as executor:
        return list(executor.map(run, calls))


def count(pool: ConnectionPool[Any], query: str, *params: Any) -> int:
    with pool.connection() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def test_both_providers_implement_the_protocol(pool: ConnectionPool[Any]) -> None:
    assert isinstance(WalletProvider(pool), PaymentProvider)
    assert isinstance(PostpaidProvider(pool), PaymentProvider)


def test_top_up_hold_capture_release_refund_to_the_cent(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    topped = wallet.top_up("alice", 5000, "eur", reference="pi_1", idempotency_key="top_up:pi_1")
    assert (topped.amount_minor, topped.available_minor, topped.currency) == (5000, 5000, "EUR")

    ref = authorize(wallet, "S1", 2000)
    assert (
        wallet.balance("alice", "EUR").available_minor,
        wallet.balance("alice", "EUR").held_minor,
    ) == (3000, 2000)

    captured = wallet.capture(ref, 1234, idempotency_key="capture:S1")
    assert captured.shortfall_minor == 0
    assert captured.payment.status is PaymentStatus.CAPTURED
    assert (captured.payment.authorized_minor, captured.payment.captured_minor) == (2000, 1234)
    after_capture = wallet.balance("alice", "EUR")
    assert (after_capture.available_minor, after_capture.held_minor) == (3766, 0)

    refunded = wallet.refund(ref, 234, idempotency_key="refund:S1:1", reason="tariff error")
    assert (refunded.payment_reference, refunded.amount_minor) == (ref, 234)
    assert wallet.balance("alice", "EUR").available_minor == 4000
    assert wallet.get(ref).refunded_minor == 234

    released = wallet.cancel(authorize(wallet, "S2", 1000), idempotency_key="cancel:S2")
    assert (released.status, released.captured_minor) == (PaymentStatus.CANCELED, 0)
    assert wallet.balance("alice", "EUR").available_minor == 4000

    over = wallet.capture(authorize(wallet, "S3", 500), 730, idempotency_key="capture:S3")
    assert (over.payment.captured_minor, over.shortfall_minor) == (500, 230)
    final = wallet.balance("alice", "EUR")
    assert (final.available_minor, final.held_minor) == (3500, 0)

    with pool.connection() as conn:
        session_entries = ledger.entries(conn, session_id="S1")
        revenue = ledger.entries(conn, account_kind="revenue")
    assert {e.session_id for e in session_entries} == {"S1"}
    assert sum(e.amount_minor for e in session_entries) == 0
    assert [e.kind for e in session_entries if e.account_kind == "wallet_available"] == [
        "hold",
        "capture",
        "refund",
    ]
    assert [e.amount_minor for e in session_entries if e.account_kind == "wallet_available"] == [
        -2000,
        766,
        234,
    ]
    assert sum(e.amount_minor for e in revenue) == 1234 - 234 + 500
    assert all(e.session_id for e in revenue)
    assert_reconciles(pool)


def test_insufficient_funds_are_declined_and_change_nothing(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    wallet.top_up("alice", 1000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")
    with pytest.raises(PaymentDeclined):
        authorize(wallet, "S1", 1001)
    balance = wallet.balance("alice", "EUR")
    assert (balance.available_minor, balance.held_minor) == (1000, 0)
    assert count(pool, "SELECT count(*) FROM ledger_holds") == 0
    assert count(pool, "SELECT count(*) FROM ledger_transactions") == 1
    with pytest.raises(PaymentDeclined):
        authorize(wallet, "S1", 1, customer="nobody")  # no wallet at all

    # A decline records nothing, not even its key: after a top-up the same call succeeds.
    wallet.top_up("alice", 1, "EUR", reference="pi_2", idempotency_key="top_up:pi_2")
    assert wallet.get(authorize(wallet, "S1", 1001)).status is PaymentStatus.AUTHORIZED
    assert wallet.balance("alice", "EUR").available_minor == 0
    assert_reconciles(pool)


def test_concurrent_holds_never_overdraw(wallet: WalletProvider, pool: ConnectionPool[Any]) -> None:
    wallet.top_up("alice", 10_000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")

    def hold(i: int) -> Callable[[], str]:
        return lambda: authorize(wallet, f"S{i}", 300)

    results = all_at_once([hold(i) for i in range(THREADS)])

    held = [r for r in results if isinstance(r, str)]
    declined = [r for r in results if isinstance(r, PaymentDeclined)]
    assert len(held) + len(declined) == THREADS, results
    assert len(held) == 33  # 33 * 300 = 9900 <= 10000 < 34 * 300
    assert sum(wallet.get(ref).authorized_minor for ref in held) <= 10_000
    balance = wallet.balance("alice", "EUR")
    assert (balance.available_minor, balance.held_minor) == (100, 9900)
    assert_reconciles(pool)


def test_concurrent_captures_of_one_hold_capture_once(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    wallet.top_up("alice", 10_000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")

    ref = authorize(wallet, "S1", 2000)

    def capture(key: str) -> Callable[[], CaptureResult]:
        return lambda: wallet.capture(ref, 1500, idempotency_key=key)

    different_keys = all_at_once([capture(f"capture:S1:{i}") for i in range(THREADS)])
    won = [r for r in different_keys if not isinstance(r, PaymentError)]
    assert len(won) == 1
    assert all(isinstance(r, InvalidPaymentRequest) for r in different_keys if r not in won)
    assert wallet.get(ref).captured_minor == 1500

    ref2 = authorize(wallet, "S2", 2000)
    same_key = all_at_once(
        [lambda: wallet.capture(ref2, 1200, idempotency_key="capture:S2")] * THREADS
    )
    assert all(not isinstance(r, PaymentError) for r in same_key), same_key
    assert len(set(same_key)) == 1
    assert (
        count(
            pool,
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'capture' AND hold_id = %s",
            ref2,
        )
        == 1
    )
    balance = wallet.balance("alice", "EUR")
    assert (balance.available_minor, balance.held_minor) == (10_000 - 1500 - 1200, 0)
    assert_reconciles(pool)


def test_a_refund_never_exceeds_the_capture(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    wallet.top_up("alice", 3000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")
    ref = authorize(wallet, "S1", 2000)
    with pytest.raises(InvalidPaymentRequest):
        wallet.refund(ref, 1, idempotency_key="refund:S1:early")  # nothing captured yet
    wallet.capture(ref, 1000, idempotency_key="capture:S1")
    wallet.refund(ref, 600, idempotency_key="refund:S1:1")
    with pytest.raises(InvalidPaymentRequest):
        wallet.refund(ref, 401, idempotency_key="refund:S1:2")
    assert wallet.balance("alice", "EUR").available_minor == 2600
    assert wallet.refund(ref, 400, idempotency_key="refund:S1:3").amount_minor == 400
    assert wallet.get(ref).refunded_minor == 1000
    assert wallet.balance("alice", "EUR").available_minor == 3000
    with pytest.raises(InvalidPaymentRequest):
        wallet.refund(ref, 1, idempotency_key="refund:S1:4")
    assert_reconciles(pool)


def test_replays_return_the_first_outcome(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    first_top_up = wallet.top_up("alice", 2500, "EUR", reference="pi_1", idempotency_key="t:1")
    assert (
        wallet.top_up("alice", 2500, "EUR", reference="pi_1", idempotency_key="t:1") == first_top_up
    )
    assert wallet.balance("alice", "EUR").available_minor == 2500

    ref = authorize(wallet, "S1", 2000)
    assert authorize(wallet, "S1", 2000) == ref
    assert count(pool, "SELECT count(*) FROM ledger_holds") == 1

    first = wallet.capture(ref, 800, idempotency_key="capture:S1")
    wallet.refund(ref, 300, idempotency_key="refund:S1")
    assert wallet.capture(ref, 800, idempotency_key="capture:S1") == first  # refunded 0 then
    assert wallet.refund(ref, 300, idempotency_key="refund:S1").amount_minor == 300
    assert wallet.get(ref).refunded_minor == 300
    with pytest.raises(InvalidPaymentRequest):
        wallet.capture(ref, 900, idempotency_key="capture:S1")  # the key, another amount
    with pytest.raises(InvalidPaymentRequest):
        wallet.top_up("alice", 1, "EUR", reference="pi_2", idempotency_key="t:1")

    released = wallet.cancel(authorize(wallet, "S2", 100), idempotency_key="cancel:S2")
    assert wallet.cancel(released.reference, idempotency_key="cancel:S2") == released
    with pytest.raises(InvalidPaymentRequest):
        wallet.cancel(ref, idempotency_key="cancel:S1")  # captured: nothing to release
    assert wallet.balance("alice", "EUR").available_minor == 2500 - 800 + 300
    assert_reconciles(pool)


def test_one_key_used_concurrently_for_two_wallets_holds_once(
    wallet: WalletProvider, pool: ConnectionPool[Any]
) -> None:
    """Holds on two wallets lock different accounts and meet only at the key's UNIQUE
    index: the loser retries, finds the key taken by another request and is refused."""
    for customer in ("alice", "bob"):
        wallet.top_up(customer, 1000, "EUR", reference=customer, idempotency_key=customer)

    def hold(customer: str) -> Callable[[], Payment]:
        return lambda: wallet.authorize(
            session_id="S1", customer=customer, amount_minor=700, currency="EUR",
            payment_method=None, idempotency_key="authorize:S1",
        )  # fmt: skip

    results = all_at_once([hold("alice" if i % 2 else "bob") for i in range(THREADS)])

    done = [r for r in results if isinstance(r, Payment)]
    assert len(set(done)) == 1, results
    assert all(isinstance(r, InvalidPaymentRequest) for r in results if r not in done)
    held = sorted(wallet.balance(c, "EUR").held_minor for c in ("alice", "bob"))
    assert held == [0, 700]
    assert count(pool, "SELECT count(*) FROM ledger_holds") == 1
    assert_reconciles(pool)


def test_each_provider_answers_for_its_own_payments_only(pool: ConnectionPool[Any]) -> None:
    wallet, postpaid = WalletProvider(pool), PostpaidProvider(pool)
    ref = authorize(postpaid, "S1", 500)
    with pytest.raises(InvalidPaymentRequest):
        wallet.get(ref)
    with pytest.raises(InvalidPaymentRequest):
        wallet.capture(ref, 500, idempotency_key="capture:S1")
    with pytest.raises(InvalidPaymentRequest):
        postpaid.get("wallet_0")
    with pytest.raises(InvalidPaymentRequest):  # the key of a postpaid authorisation
        wallet.authorize(
            session_id="S1", customer="alice", amount_minor=500, currency="EUR",
            payment_method=None, idempotency_key="authorize:S1",
        )  # fmt: skip
    assert postpaid.get(ref).status is PaymentStatus.AUTHORIZED


def test_the_database_refuses_unbalanced_or_changed_postings(
    wallet: WalletProvider, pool: ConnectionPool[Any], db: psycopg.Connection[Any]
) -> None:
    wallet.top_up("alice", 1000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")
    account = count(pool, "SELECT account_id FROM ledger_accounts WHERE kind = 'wallet_available'")
    transaction = count(pool, "SELECT transaction_id FROM ledger_transactions")

    with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"), db.transaction():
        db.execute(
            "INSERT INTO ledger_postings (transaction_id, account_id, amount_minor)"
            " VALUES (%s, %s, 1)",
            (transaction, account),
        )
    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        db.execute("UPDATE ledger_postings SET amount_minor = amount_minor * 2")
    with pytest.raises(psycopg.errors.RestrictViolation):
        db.execute("DELETE FROM ledger_postings")
    with pytest.raises(psycopg.errors.CheckViolation, match="ledger_wallet_never_negative"):
        db.execute(
            "UPDATE ledger_accounts SET balance_minor = -1 WHERE account_id = %s", (account,)
        )
    assert wallet.balance("alice", "EUR").available_minor == 1000
    assert_reconciles(pool)


def test_reconcile_finds_a_balance_that_is_not_its_postings(
    wallet: WalletProvider, pool: ConnectionPool[Any], db: psycopg.Connection[Any]
) -> None:
    wallet.top_up("alice", 1000, "EUR", reference="pi_1", idempotency_key="top_up:pi_1")
    wallet.capture(authorize(wallet, "S1", 400), 400, idempotency_key="capture:S1")
    assert_reconciles(pool)
    db.execute(
        "UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE kind = 'revenue'"
    )
    with pool.connection() as conn:
        found = ledger.reconcile(conn)
    assert not found.ok
    assert [(balance, posted) for _, balance, posted in found.mismatched_accounts] == [(401, 400)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_postpaid_charges_and_the_monthly_statement(pool: ConnectionPool[Any]) -> None:
    clock = Clock(datetime(2026, 11, 10, 9, tzinfo=UTC))
    postpaid = PostpaidProvider(pool, clock=clock, statement_zone="Europe/Berlin")
    postpaid.set_credit_limit("bob", "EUR", 5000)

    nov = authorize(postpaid, "S1", 3000, customer="bob")
    assert postpaid.capture(nov, 1850, idempotency_key="capture:S1").shortfall_minor == 0
    # 23:30 UTC on 30 November is 00:30 on 1 December in Berlin: December's statement.
    clock.now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    dec = authorize(postpaid, "S2", 2000, customer="bob")
    assert postpaid.capture(dec, 2400, idempotency_key="capture:S2").shortfall_minor == 400
    clock.now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    postpaid.refund(nov, 350, idempotency_key="refund:S1", reason="idle fee waived")

    # Owed 1850 + 2000 - 350 = 3500; with a limit of 5000 an open 1500 fits, 1 more not.
    open_ref = authorize(postpaid, "S3", 1500, customer="bob")
    with pytest.raises(PaymentDeclined):
        authorize(postpaid, "S4", 1, customer="bob")
    postpaid.cancel(open_ref, idempotency_key="cancel:S3")
    assert authorize(postpaid, "S4", 1, customer="bob")

    november = postpaid.statement("bob", "2026-11", "EUR")
    assert [(line.session_id, line.kind, line.amount_minor) for line in november.lines] == [
        ("S1", "charge", 1850)
    ]
    assert november.total_minor == 1850
    december = postpaid.statement("bob", "2026-12", "EUR")
    assert [(line.session_id, line.kind, line.amount_minor) for line in december.lines] == [
        ("S2", "charge", 2000),
        ("S1", "refund", -350),
    ]
    assert december.total_minor == 1650
    assert postpaid.statement("bob", "2026-10", "EUR").total_minor == 0
    assert postpaid.statement("carol", "2026-11", "EUR").lines == []
    assert_reconciles(pool)


def test_an_unreachable_ledger_is_a_retryable_error_without_the_address() -> None:
    url = "postgresql://ledger_user:s3cret-pw@127.0.0.1:9/ledger"  # discard port: refused
    with (
        ConnectionPool(url, min_size=1, timeout=1, open=True) as unreachable,
        pytest.raises(PaymentUnavailable) as raised,
    ):
        authorize(WalletProvider(unreachable), "S1", 100)
    assert raised.value.retryable
    # Neither the message nor the chained cause a traceback would print names the login.
    for told in (str(raised.value), str(raised.value.__cause__)):
        assert "s3cret" not in told
        assert "ledger_user" not in told
