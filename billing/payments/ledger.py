"""What the wallet and the postpaid providers share: the ledger's holds answered as
:class:`~billing.payments.provider.Payment`, capture, cancel, refund and get through
:mod:`store.ledger`, and its errors as the provider interface's.

Each call takes a connection from a (sync) psycopg pool and runs one database
transaction (:mod:`store.ledger` locks, checks the idempotency key and posts). The
database being unreachable (or a deadlock, a pool timeout) is
:class:`~billing.payments.provider.PaymentUnavailable`: the same call with the same key
may be retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool

from billing.money import CurrencyError
from billing.payments.provider import (
    CaptureResult,
    InvalidPaymentRequest,
    Payment,
    PaymentDeclined,
    PaymentStatus,
    PaymentUnavailable,
    Refund,
)
from bus.times import utc_now
from store import ledger


@contextmanager
def provider_errors() -> Iterator[None]:
    """The ledger's and the database's errors as the provider interface's."""
    try:
        yield
    except ledger.InsufficientFunds as exc:
        raise PaymentDeclined(str(exc)) from exc
    except (ledger.InvalidLedgerRequest, CurrencyError) as exc:
        raise InvalidPaymentRequest(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise PaymentUnavailable("the ledger database is unavailable") from exc


def payment(provider: str, hold: ledger.Hold) -> Payment:
    return Payment(
        provider=provider,
        reference=hold.hold_id,
        currency=hold.currency,
        authorized_minor=hold.authorized_minor,
        captured_minor=hold.captured_minor,
        refunded_minor=hold.refunded_minor,
        status=PaymentStatus(hold.status),
    )


class LedgerProvider:
    """Capture, cancel, refund and get of a ledger-backed provider; subclasses give the
    ``kind`` of their holds (also their ``name``) and ``authorize``."""

    kind: ClassVar[ledger.Provider]

    def __init__(
        self, pool: ConnectionPool[Any], *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.name: str = self.kind
        self._pool = pool
        self._clock = clock  # when a transaction is booked (the statement month)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with provider_errors(), self._pool.connection() as conn:
            yield conn

    def capture(self, reference: str, amount_minor: int, *, idempotency_key: str) -> CaptureResult:
        with self._connection() as conn:
            done = ledger.capture(
                conn, reference, amount_minor, provider=self.kind,
                idempotency_key=idempotency_key, at=self._clock(),
            )  # fmt: skip
        return CaptureResult(payment(self.name, done.hold), done.shortfall_minor)

    def cancel(self, reference: str, *, idempotency_key: str) -> Payment:
        with self._connection() as conn:
            released = ledger.release(
                conn, reference, provider=self.kind, idempotency_key=idempotency_key,
                at=self._clock(),
            )  # fmt: skip
        return payment(self.name, released)

    def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, reason: str | None = None
    ) -> Refund:
        with self._connection() as conn:
            done = ledger.refund(
                conn, reference, amount_minor, provider=self.kind,
                idempotency_key=idempotency_key, reason=reason, at=self._clock(),
            )  # fmt: skip
        return Refund(self.name, reference, done.refund_id, done.amount_minor)

    def get(self, reference: str) -> Payment:
        with self._connection() as conn:
            return payment(self.name, ledger.get_hold(conn, reference, self.kind))
