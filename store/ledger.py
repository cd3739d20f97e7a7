"""The payments ledger (tables ``ledger_accounts``, ``ledger_holds``,
``ledger_transactions``, ``ledger_postings``): prepaid wallets and postpaid accounts as a
double-entry ledger. Sync psycopg 3: the payment providers that call it are synchronous.

Every operation is one database transaction on the caller's connection that

1. locks what it changes in a fixed order: the hold row first (``FOR UPDATE``), then the
   accounts in ``account_id`` order, so concurrent operations queue instead of
   deadlocking, and a hold is captured, released or refunded by one caller at a time;
2. looks up its idempotency key (after the locks, so a concurrent call with the same key
   has committed by then): a key already used returns the stored first outcome
   (``ledger_transactions.outcome``), or raises :class:`InvalidLedgerRequest` when it
   was used for a different request;
3. checks the request against the locked state (balance, credit limit, hold status,
   what was captured) and raises before anything is written;
4. writes the transaction row (``idempotency_key`` UNIQUE: a same-key call that slipped
   past the lookup loses the insert and is answered by a retry, which finds the key) and
   its postings with the accounts' new balances (:func:`net_postings`: they sum to 0).

Amounts are credits positive: a wallet's balance is what the house owes its holder, the
``external_funding`` account (money received) and a receivable (what a postpaid customer
owes) are negative. Wallet accounts cannot go below 0 (CHECK), the postings of a
transaction sum to 0 per currency (deferred constraint trigger) and are append-only.

Postings per operation (W = wallet_available, H = wallet_held, R = revenue,
F = external_funding, P = postpaid_receivable):

* top-up x: F -x, W +x;
* wallet hold x: W -x, H +x; capture c of x: H -x, R +c, W +(x - c); release: H -x, W +x;
  refund r: R -r, W +r (back into the wallet);
* postpaid authorisation: no posting (a memo the credit limit counts); charge c: P -c,
  R +c; release: no posting; refund r: R -r, P +r.

A declined or rejected call writes nothing, not even its key: a retry after a top-up may
succeed.

Size: about 720 lines, a third of it records and docstrings: the operations share the
locking, idempotency and posting steps, and the reads (balances, entries, reconcile) must
agree with the sign convention above.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.db import Where

Provider = Literal["wallet", "postpaid"]
AccountKind = Literal[
    "wallet_available", "wallet_held", "postpaid_receivable", "revenue", "external_funding"
]

T = TypeVar("T")
Cursor = psycopg.Cursor[Any]


class LedgerError(Exception):
    """A ledger operation did not happen; nothing was written."""


class InsufficientFunds(LedgerError):
    """The wallet's available balance, or the postpaid credit limit, does not cover it."""


class InvalidLedgerRequest(LedgerError):
    """The request cannot succeed as asked: an unknown hold, a capture of a released
    hold, a refund above what was captured, an idempotency key reused for another
    request, an amount out of range."""


class _KeyTaken(Exception):
    """A concurrent call with the same idempotency key committed first."""


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    provider: str
    customer: str
    session_id: str
    currency: str
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    status: str  # authorized | captured | canceled


@dataclass(frozen=True, slots=True)
class Capture:
    hold: Hold
    shortfall_minor: int  # what was asked beyond the hold: not captured


@dataclass(frozen=True, slots=True)
class Refunded:
    hold: Hold
    refund_id: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class TopUp:
    customer: str
    currency: str
    reference: str
    amount_minor: int
    available_minor: int  # the wallet's available balance right after this top-up


@dataclass(frozen=True, slots=True)
class Balance:
    customer: str
    currency: str
    available_minor: int
    held_minor: int
    owed_minor: int  # postpaid: charged and not settled
    credit_limit_minor: int | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One posting with its transaction: what moved, on which account, for which session
    (a top-up: which external reference)."""

    transaction_id: int
    kind: str
    customer: str
    session_id: str | None
    hold_id: str | None
    reference: str | None
    account_kind: str
    account_customer: str | None
    currency: str
    amount_minor: int
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What :func:`reconcile` found wrong (all empty: the ledger is consistent)."""

    unbalanced_currencies: dict[str, int]  # currency -> sum of its postings (should be 0)
    unbalanced_transactions: list[int]
    mismatched_accounts: list[tuple[int, int, int]]  # (account, balance, sum of postings)
    mismatched_holds: list[tuple[str, str, int, int]]  # (customer, currency, held, open)

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_currencies
            or self.unbalanced_transactions
            or self.mismatched_accounts
            or self.mismatched_holds
        )


# --------------------------------------------------------------------------- pure steps


def net_postings(postings: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(account_id, amount)`` pairs merged per account, zeros dropped, in account order
    (the order the accounts are locked in). Raises ValueError unless they sum to 0.

    >>> net_postings([(7, -500), (3, 120), (7, 0), (5, 380)])
    [(3, 120), (5, 380), (7, -500)]
    >>> net_postings([(3, -100), (3, 100)])
    []
    >>> net_postings([(3, -100), (4, 99)])
    Traceback (most recent call last):
    ...
    ValueError: postings sum to -1, not 0
    """
    merged: dict[int, int] = {}
    for account_id, amount in postings:
        merged[account_id] = merged.get(account_id, 0) + amount
    total = sum(merged.values())
    if total != 0:
        raise ValueError(f"postings sum to {total}, not 0")
    return sorted((a, amount) for a, amount in merged.items() if amount != 0)


def _positive(amount_minor: int, what: str) -> None:
    if amount_minor <= 0:
        raise InvalidLedgerRequest(f"{what} must be a positive amount of minor units")


# --------------------------------------------------------------------------- shared steps


def _run(conn: psycopg.Connection[Any], operation: Callable[[Cursor], T]) -> T:
    """``operation`` in one transaction; once more if a same-key call committed first
    (the second run finds its outcome)."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            return operation(cur)
    except _KeyTaken:
        with conn.transaction(), conn.cursor() as cur:
            return operation(cur)


def _account_id(cur: Cursor, customer: str | None, kind: AccountKind, currency: str) -> int:
    # Two statements: after waiting on a concurrent insert of the same account, only a
    # new statement's snapshot sees the committed row.
    cur.execute(
        "INSERT INTO ledger_accounts (customer, kind, currency) VALUES (%s, %s, %s)"
        " ON CONFLICT ((coalesce(customer, '')), kind, currency) DO NOTHING",
        (customer, kind, currency),
    )
    cur.execute(
        "SELECT account_id FROM ledger_accounts"
        " WHERE coalesce(customer, '') = coalesce(%s, '') AND kind = %s AND currency = %s",
        (customer, kind, currency),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def _lock_accounts(cur: Cursor, account_ids: Sequence[int]) -> dict[int, tuple[int, int | None]]:
    """Lock the accounts in ``account_id`` order; their (balance, credit limit)."""
    cur.execute(
        "SELECT account_id, balance_minor, credit_limit_minor FROM ledger_accounts"
        " WHERE account_id = ANY(%s) ORDER BY account_id FOR UPDATE",
        (list(account_ids),),
    )
    return {int(a): (int(b), limit) for a, b, limit in cur.fetchall()}


_HOLD_COLUMNS = (
    "hold_id, provider, customer, session_id, currency, authorized_minor, captured_minor,"
    " refunded_minor, status"
)


def _lock_hold(cur: Cursor, hold_id: str, provider: Provider) -> Hold:
    with cur.connection.cursor(row_factory=class_row(Hold)) as holds:
        holds.execute(
            f"SELECT {_HOLD_COLUMNS} FROM ledger_holds WHERE hold_id = %s AND provider = %s"
            " FOR UPDATE",
            (hold_id, provider),
        )
        hold = holds.fetchone()
    if hold is None:
        raise InvalidLedgerRequest(f"no {provider} payment {hold_id!r}")
    return hold


@dataclass(frozen=True, slots=True)
class _Request:
    """What an idempotency key stands for: a replay must ask the same."""

    kind: str
    customer: str
    requested_minor: int
    session_id: str | None = None
    hold_id: str | None = None
    reference: str | None = None
    provider: Provider | None = None  # a new hold's: the key must not answer another's


def _prior(cur: Cursor, key: str, request: _Request) -> dict[str, Any] | None:
    """The first outcome of ``key``, if it was used; raises if for another request."""
    cur.execute(
        "SELECT kind, customer, requested_minor, session_id, hold_id, reference, outcome"
        " FROM ledger_transactions WHERE idempotency_key = %s",
        (key,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    asked = (request.kind, request.customer, request.requested_minor, request.session_id)
    same = tuple(row[:4]) == asked and request.hold_id in (None, row[4])
    # A refund's reference is the refund id it made; a top-up's is the money's origin.
    outcome: dict[str, Any] = row[6]
    if request.provider is not None and outcome["hold"]["provider"] != request.provider:
        same = False
    if not same or request.reference not in (None, row[5]):
        raise InvalidLedgerRequest("idempotency key already used for a different request")
    return outcome


def _record(
    cur: Cursor,
    request: _Request,
    key: str,
    outcome: dict[str, Any],
    postings: Iterable[tuple[int, int]],
    *,
    reason: str | None = None,
    at: datetime | None = None,
) -> None:
    """The transaction row and its postings, with the accounts' new balances."""
    netted = net_postings(postings)
    cur.execute(
        "INSERT INTO ledger_transactions (kind, customer, session_id, hold_id, reference,"
        " idempotency_key, requested_minor, reason, outcome, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING transaction_id",
        (
            request.kind,
            request.customer,
            request.session_id,
            request.hold_id,
            request.reference,
            key,
            request.requested_minor,
            reason,
            Jsonb(outcome),
            at,
        ),
    )
    row = cur.fetchone()
    if row is None:
        raise _KeyTaken
    if not netted:
        return
    accounts = [a for a, _ in netted]
    amounts = [amount for _, amount in netted]
    cur.execute(
        "INSERT INTO ledger_postings (transaction_id, account_id, amount_minor)"
        " SELECT %s, a, m FROM unnest(%s::bigint[], %s::bigint[]) AS p(a, m)",
        (row[0], accounts, amounts),
    )
    cur.execute(
        "UPDATE ledger_accounts AS acc SET balance_minor = acc.balance_minor + p.m"
        " FROM unnest(%s::bigint[], %s::bigint[]) AS p(a, m) WHERE acc.account_id = p.a",
        (accounts, amounts),
    )


def _save_hold(cur: Cursor, hold: Hold, *, insert: bool = False) -> None:
    if insert:
        cur.execute(
            f"INSERT INTO ledger_holds ({_HOLD_COLUMNS})"
            " VALUES (%(hold_id)s, %(provider)s, %(customer)s, %(session_id)s, %(currency)s,"
            " %(authorized_minor)s, %(captured_minor)s, %(refunded_minor)s, %(status)s)",
            asdict(hold),
        )
        return
    cur.execute(
        "UPDATE ledger_holds SET captured_minor = %(captured_minor)s,"
        " refunded_minor = %(refunded_minor)s, status = %(status)s, updated_at = now()"
        " WHERE hold_id = %(hold_id)s",
        asdict(hold),
    )


def _new_hold(
    provider: Provider, customer: str, session_id: str, amount_minor: int, currency: str
) -> Hold:
    return Hold(
        f"{provider}_{uuid.uuid4().hex}", provider, customer, session_id, currency,
        amount_minor, 0, 0, "authorized",
    )  # fmt: skip


# --------------------------------------------------------------------------- operations


def top_up(
    conn: psycopg.Connection[Any],
    customer: str,
    amount_minor: int,
    currency: str,
    *,
    reference: str,
    idempotency_key: str,
    at: datetime | None = None,
) -> TopUp:
    """Credit the customer's wallet with money received (``reference``: the payment that
    brought it, e.g. a Stripe PaymentIntent)."""
    _positive(amount_minor, "a top-up")
    request = _Request("top_up", customer, amount_minor, reference=reference)

    def operation(cur: Cursor) -> TopUp:
        available = _account_id(cur, customer, "wallet_available", currency)
        funding = _account_id(cur, None, "external_funding", currency)
        balances = _lock_accounts(cur, [available, funding])
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return TopUp(**prior)
        done = TopUp(
            customer, currency, reference, amount_minor, balances[available][0] + amount_minor
        )
        postings = [(funding, -amount_minor), (available, amount_minor)]
        _record(cur, request, idempotency_key, asdict(done), postings, at=at)
        return done

    return _run(conn, operation)


def hold(
    conn: psycopg.Connection[Any],
    *,
    customer: str,
    session_id: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    at: datetime | None = None,
) -> Hold:
    """Move ``amount_minor`` of the wallet's available balance to held for the session;
    :class:`InsufficientFunds` when the available balance does not cover it."""
    _positive(amount_minor, "a hold")
    request = _Request("hold", customer, amount_minor, session_id=session_id, provider="wallet")

    def operation(cur: Cursor) -> Hold:
        available = _account_id(cur, customer, "wallet_available", currency)
        held = _account_id(cur, customer, "wallet_held", currency)
        balances = _lock_accounts(cur, [available, held])
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return Hold(**prior["hold"])
        if balances[available][0] < amount_minor:
            raise InsufficientFunds("the wallet's available balance does not cover the hold")
        new = _new_hold("wallet", customer, session_id, amount_minor, currency)
        _save_hold(cur, new, insert=True)
        postings = [(available, -amount_minor), (held, amount_minor)]
        _record(cur, _for(request, new), idempotency_key, {"hold": asdict(new)}, postings, at=at)
        return new

    return _run(conn, operation)


def authorize_postpaid(
    conn: psycopg.Connection[Any],
    *,
    customer: str,
    session_id: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    at: datetime | None = None,
) -> Hold:
    """Authorise a postpaid session: always, unless the customer's credit limit (owed +
    open authorisations + this one) would be exceeded (:class:`InsufficientFunds`)."""
    _positive(amount_minor, "an authorisation")
    request = _Request("hold", customer, amount_minor, session_id=session_id, provider="postpaid")

    def operation(cur: Cursor) -> Hold:
        receivable = _account_id(cur, customer, "postpaid_receivable", currency)
        balance, limit = _lock_accounts(cur, [receivable])[receivable]
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return Hold(**prior["hold"])
        if (
            limit is not None
            and -balance + _open_postpaid(cur, customer, currency) + amount_minor > limit
        ):
            raise InsufficientFunds("the authorisation would exceed the customer's credit limit")
        new = _new_hold("postpaid", customer, session_id, amount_minor, currency)
        _save_hold(cur, new, insert=True)
        _record(cur, _for(request, new), idempotency_key, {"hold": asdict(new)}, [], at=at)
        return new

    return _run(conn, operation)


def _for(request: _Request, new: Hold) -> _Request:
    return replace(request, hold_id=new.hold_id)


def _open_postpaid(cur: Cursor, customer: str, currency: str) -> int:
    cur.execute(
        "SELECT coalesce(sum(authorized_minor), 0) FROM ledger_holds WHERE provider = 'postpaid'"
        " AND customer = %s AND currency = %s AND status = 'authorized'",
        (customer, currency),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def capture(
    conn: psycopg.Connection[Any],
    hold_id: str,
    amount_minor: int,
    *,
    provider: Provider,
    idempotency_key: str,
    at: datetime | None = None,
) -> Capture:
    """Collect ``min(amount_minor, authorised)`` of an authorised hold, once; the rest of
    a wallet hold returns to the available balance, the excess is the shortfall."""
    if amount_minor < 0:
        raise InvalidLedgerRequest("a capture cannot be negative")

    def operation(cur: Cursor) -> Capture:
        held = _lock_hold(cur, hold_id, provider)
        kind = "capture" if provider == "wallet" else "charge"
        request = _Request(kind, held.customer, amount_minor, held.session_id, hold_id)
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return Capture(Hold(**prior["hold"]), prior["shortfall_minor"])
        if held.status != "authorized":
            raise InvalidLedgerRequest(f"the payment is {held.status}, not capturable")
        captured = min(amount_minor, held.authorized_minor)
        done = Capture(
            replace(held, captured_minor=captured, status="captured"), amount_minor - captured
        )
        revenue = _account_id(cur, None, "revenue", held.currency)
        if provider == "wallet":
            on_hold = _account_id(cur, held.customer, "wallet_held", held.currency)
            available = _account_id(cur, held.customer, "wallet_available", held.currency)
            _lock_accounts(cur, [on_hold, available, revenue])
            rest = held.authorized_minor - captured
            postings = [(on_hold, -held.authorized_minor), (revenue, captured), (available, rest)]
        else:
            receivable = _account_id(cur, held.customer, "postpaid_receivable", held.currency)
            _lock_accounts(cur, [receivable, revenue])
            postings = [(receivable, -captured), (revenue, captured)]
        _save_hold(cur, done.hold)
        _record(cur, request, idempotency_key, asdict(done), postings, at=at)
        return done

    return _run(conn, operation)


def release(
    conn: psycopg.Connection[Any],
    hold_id: str,
    *,
    provider: Provider,
    idempotency_key: str,
    at: datetime | None = None,
) -> Hold:
    """Cancel an authorised hold (a wallet's amount returns to available); a hold
    already released is returned as it is, a captured one cannot be released."""

    def operation(cur: Cursor) -> Hold:
        held = _lock_hold(cur, hold_id, provider)
        request = _Request(
            "release", held.customer, held.authorized_minor, held.session_id, hold_id
        )
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return Hold(**prior["hold"])
        if held.status == "canceled":
            return held
        if held.status != "authorized":
            raise InvalidLedgerRequest(f"the payment is {held.status}, it cannot be released")
        done = replace(held, status="canceled")
        postings: list[tuple[int, int]] = []
        if provider == "wallet":
            on_hold = _account_id(cur, held.customer, "wallet_held", held.currency)
            available = _account_id(cur, held.customer, "wallet_available", held.currency)
            _lock_accounts(cur, [on_hold, available])
            postings = [(on_hold, -held.authorized_minor), (available, held.authorized_minor)]
        _save_hold(cur, done)
        _record(cur, request, idempotency_key, {"hold": asdict(done)}, postings, at=at)
        return done

    return _run(conn, operation)


def refund(
    conn: psycopg.Connection[Any],
    hold_id: str,
    amount_minor: int,
    *,
    provider: Provider,
    idempotency_key: str,
    reason: str | None = None,
    at: datetime | None = None,
) -> Refunded:
    """Return part of a capture (to the wallet, or off the receivable); the refunds of a
    hold never exceed its capture."""
    _positive(amount_minor, "a refund")

    def operation(cur: Cursor) -> Refunded:
        held = _lock_hold(cur, hold_id, provider)
        request = _Request("refund", held.customer, amount_minor, held.session_id, hold_id)
        prior = _prior(cur, idempotency_key, request)
        if prior is not None:
            return Refunded(Hold(**prior["hold"]), prior["refund_id"], prior["amount_minor"])
        if held.status != "captured" or held.refunded_minor + amount_minor > held.captured_minor:
            raise InvalidLedgerRequest("a refund cannot exceed what was captured and not refunded")
        refund_id = f"refund_{uuid.uuid4().hex}"
        done = Refunded(
            replace(held, refunded_minor=held.refunded_minor + amount_minor),
            refund_id,
            amount_minor,
        )
        kind: AccountKind = "wallet_available" if provider == "wallet" else "postpaid_receivable"
        back_to = _account_id(cur, held.customer, kind, held.currency)
        revenue = _account_id(cur, None, "revenue", held.currency)
        _lock_accounts(cur, [back_to, revenue])
        _save_hold(cur, done.hold)
        postings = [(revenue, -amount_minor), (back_to, amount_minor)]
        recorded = replace(request, reference=refund_id)
        _record(cur, recorded, idempotency_key, asdict(done), postings, reason=reason, at=at)
        return done

    return _run(conn, operation)


def set_credit_limit(
    conn: psycopg.Connection[Any], customer: str, currency: str, limit_minor: int | None
) -> None:
    """The postpaid customer's credit limit (None: no limit)."""
    with conn.transaction(), conn.cursor() as cur:
        receivable = _account_id(cur, customer, "postpaid_receivable", currency)
        cur.execute(
            "UPDATE ledger_accounts SET credit_limit_minor = %s WHERE account_id = %s",
            (limit_minor, receivable),
        )


# --------------------------------------------------------------------------- reads


def get_hold(conn: psycopg.Connection[Any], hold_id: str, provider: Provider) -> Hold:
    with conn.cursor(row_factory=class_row(Hold)) as cur:
        cur.execute(
            f"SELECT {_HOLD_COLUMNS} FROM ledger_holds WHERE hold_id = %s AND provider = %s",
            (hold_id, provider),
        )
        found = cur.fetchone()
    if found is None:
        raise InvalidLedgerRequest(f"no {provider} payment {hold_id!r}")
    return found


def balance(conn: psycopg.Connection[Any], customer: str, currency: str) -> Balance:
    rows = conn.execute(
        "SELECT kind, balance_minor, credit_limit_minor FROM ledger_accounts"
        " WHERE customer = %s AND currency = %s",
        (customer, currency),
    ).fetchall()
    by_kind = {kind: (amount, limit) for kind, amount, limit in rows}
    return Balance(
        customer,
        currency,
        available_minor=by_kind.get("wallet_available", (0, None))[0],
        held_minor=by_kind.get("wallet_held", (0, None))[0],
        owed_minor=-by_kind.get("postpaid_receivable", (0, None))[0],
        credit_limit_minor=by_kind.get("postpaid_receivable", (0, None))[1],
    )


def entries(
    conn: psycopg.Connection[Any],
    *,
    customer: str | None = None,
    session_id: str | None = None,
    account_kind: AccountKind | None = None,
    currency: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Entry]:
    """Postings in the order made: on ``customer``'s own accounts, of ``session_id``'s
    transactions (the house's side included), of one account kind or currency, from ``since``
    (inclusive) to ``until`` (exclusive)."""
    where = Where()
    where.add_given("a.customer = %s", customer)
    where.add_given("t.session_id = %s", session_id)
    where.add_given("a.kind = %s", account_kind)
    where.add_given("a.currency = %s", currency)
    where.add_given("t.created_at >= %s", since)
    where.add_given("t.created_at < %s", until)
    with conn.cursor(row_factory=class_row(Entry)) as cur:
        cur.execute(
            "SELECT t.transaction_id, t.kind, t.customer, t.session_id, t.hold_id, t.reference,"
            " a.kind AS account_kind, a.customer AS account_customer, a.currency,"
            " p.amount_minor, t.reason, t.created_at"
            " FROM ledger_postings p"
            " JOIN ledger_transactions t ON t.transaction_id = p.transaction_id"
            f" JOIN ledger_accounts a ON a.account_id = p.account_id WHERE {where.sql}"
            " ORDER BY t.created_at, p.transaction_id, p.posting_id",
            where.params,
        )
        return cur.fetchall()


_RECONCILE = (
    "SELECT a.currency, sum(p.amount_minor) FROM ledger_postings p"
    " JOIN ledger_accounts a ON a.account_id = p.account_id"
    " GROUP BY a.currency HAVING sum(p.amount_minor) <> 0",
    "SELECT DISTINCT p.transaction_id FROM ledger_postings p"
    " JOIN ledger_accounts a ON a.account_id = p.account_id"
    " GROUP BY p.transaction_id, a.currency HAVING sum(p.amount_minor) <> 0"
    " ORDER BY p.transaction_id",
    "SELECT a.account_id, a.balance_minor, coalesce(sum(p.amount_minor), 0)::bigint"
    " FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.account_id"
    " GROUP BY a.account_id HAVING a.balance_minor <> coalesce(sum(p.amount_minor), 0)"
    " ORDER BY a.account_id",
    # A wallet's held balance is the sum of its open holds.
    "SELECT a.customer, a.currency, a.balance_minor, coalesce(sum(h.authorized_minor), 0)::bigint"
    " FROM ledger_accounts a LEFT JOIN ledger_holds h ON h.provider = 'wallet'"
    " AND h.customer = a.customer AND h.currency = a.currency AND h.status = 'authorized'"
    " WHERE a.kind = 'wallet_held' GROUP BY a.account_id"
    " HAVING a.balance_minor <> coalesce(sum(h.authorized_minor), 0) ORDER BY a.customer",
)


def reconcile(conn: psycopg.Connection[Any]) -> Reconciliation:
    """Check the whole ledger on one snapshot: every currency's and every transaction's
    postings sum to 0, each account's balance is the sum of its postings, each wallet's
    held balance is the sum of its open holds."""
    # One snapshot: REPEATABLE READ when this starts the transaction (inside a caller's
    # transaction its isolation applies).
    fresh = conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    with conn.transaction(), conn.cursor() as cur:
        if fresh:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        found = [cur.execute(query).fetchall() for query in _RECONCILE]
    return Reconciliation(
        unbalanced_currencies={c: int(s) for c, s in found[0]},
        unbalanced_transactions=[int(t) for (t,) in found[1]],
        mismatched_accounts=[(int(a), int(b), int(s)) for a, b, s in found[2]],
        mismatched_holds=[(c, cur_, int(b), int(s)) for c, cur_, b, s in found[3]],
    )
