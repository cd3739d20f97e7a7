"""Postpaid accounts (RFID customers billed monthly): a session's authorisation always
succeeds, up to the customer's optional credit limit (what is owed plus the open
authorisations); its capture charges the customer's receivable in the ledger
(:mod:`store.ledger`), and :meth:`PostpaidProvider.statement` lists a month's charges
and refunds for the monthly statement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from psycopg_pool import ConnectionPool

from billing.money import check_currency
from billing.payments.ledger import LedgerProvider, payment
from billing.payments.provider import Payment
from bus.times import utc_now
from store import ledger


def month_bounds(month: str, zone: str = "UTC") -> tuple[datetime, datetime]:
    """The first instant of ``month`` (``YYYY-MM``) in ``zone`` and of the month after.

    >>> start, end = month_bounds("2026-12", "Europe/Berlin")
    >>> start.isoformat(), end.isoformat()
    ('2026-12-01T00:00:00+01:00', '2027-01-01T00:00:00+01:00')
    >>> month_bounds("2026-13")
    Traceback (most recent call last):
    ...
    ValueError: month must be YYYY-MM, got '2026-13'
    """
    try:
        first = datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    tz = ZoneInfo(zone)
    after = (first + timedelta(days=32)).replace(day=1)
    return first.replace(tzinfo=tz), after.replace(tzinfo=tz)


@dataclass(frozen=True, slots=True)
class StatementLine:
    at: datetime
    session_id: str
    payment_reference: str
    kind: str  # charge | refund
    amount_minor: int  # what the customer owes for it (a refund: negative)


@dataclass(frozen=True, slots=True)
class Statement:
    customer: str
    month: str
    currency: str
    lines: list[StatementLine]
    total_minor: int


def statement_lines(entries: list[ledger.Entry]) -> list[StatementLine]:
    """The receivable's postings as what the customer owes (the receivable is negative
    by what is owed: a charge of 500 is a posting of -500)."""
    return [
        StatementLine(e.created_at, e.session_id or "", e.hold_id or "", e.kind, -e.amount_minor)
        for e in entries
    ]


class PostpaidProvider(LedgerProvider):
    kind: ClassVar[ledger.Provider] = "postpaid"

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        clock: Callable[[], datetime] = utc_now,
        statement_zone: str = "UTC",
    ) -> None:
        super().__init__(pool, clock=clock)
        self._zone = statement_zone  # the zone the statement months are cut in

    def authorize(
        self,
        *,
        session_id: str,
        customer: str,
        amount_minor: int,
        currency: str,
        payment_method: str | None,
        idempotency_key: str,
        off_session: bool = False,
    ) -> Payment:
        """Authorise the session (``payment_method``, the RFID token, is not used: the
        customer's account is); :class:`PaymentDeclined` only past the credit limit."""
        with self._connection() as conn:
            held = ledger.authorize_postpaid(
                conn, customer=customer, session_id=session_id, amount_minor=amount_minor,
                currency=check_currency(currency), idempotency_key=idempotency_key,
                at=self._clock(),
            )  # fmt: skip
        return payment(self.name, held)

    def set_credit_limit(self, customer: str, currency: str, limit_minor: int | None) -> None:
        with self._connection() as conn:
            ledger.set_credit_limit(conn, customer, check_currency(currency), limit_minor)

    def statement(self, customer: str, month: str, currency: str) -> Statement:
        """The charges and refunds booked in ``month`` (``YYYY-MM``, in the provider's
        statement zone) and what they total, in minor units."""
        since, until = month_bounds(month, self._zone)
        with self._connection() as conn:
            found = ledger.entries(
                conn, customer=customer, account_kind="postpaid_receivable",
                currency=check_currency(currency), since=since, until=until,
            )  # fmt: skip
        lines = statement_lines(found)
        return Statement(customer, month, currency, lines, sum(x.amount_minor for x in lines))
