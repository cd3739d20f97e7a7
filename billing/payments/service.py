"""A session's payment from pre-authorisation to capture, refund or release, on any
provider, at most once whatever is retried, replayed or redelivered.

- ``preauthorize``: an authorised start with a payment method holds an estimate. The
  row is created first (``authorizing``); the provider call carries
  ``authorize:{session_id}``, so a concurrent or repeated call gets the same hold.
- ``capture``: the closed session's final cost. Under the row lock: a captured payment
  is answered from the row (a replayed ``sessions.closed``, the 50th concurrent
  request); otherwise the provider captures ``min(cost, authorised)`` with
  ``capture:{session_id}``. A crash between its answer and the commit rolls the row
  back and the next try gets the provider's first answer for that key. A cost above the
  authorisation is captured up to it and the rest flagged for billing.
- A failure the provider calls retryable is recorded with the next try's time
  (capped exponential backoff); ``retry_due`` runs them; after ``max_attempts`` the
  payment is flagged for billing. A decline is flagged at once.
- ``refund`` (never above the capture), ``cancel`` (release an uncaptured hold), and
  ``apply_webhook`` (a provider's event id is logged once: redelivery changes nothing).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg_pool import ConnectionPool

from billing.payments.provider import (
    InvalidPaymentRequest,
    Payment,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentStatus,
)
from bus.times import utc_now
from runtime.retry import Backoff
from store import payments as store
from store.payments import PaymentEvent, SessionPayment

log = structlog.get_logger("chargeflow.payments")

CAPTURE_RETRY = Backoff(initial_s=30.0, max_s=3600.0)
SYSTEM = "system"


class PaymentStateError(InvalidPaymentRequest):
    """The operation does not fit the payment's state (refund before capture, a second
    pre-authorisation with another provider, no payment at all)."""


class PaymentService:
    def __init__(
        self,
        pool: ConnectionPool[Any],
        providers: Mapping[str, PaymentProvider],
        *,
        max_attempts: int = 8,
        backoff: Backoff = CAPTURE_RETRY,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._providers = dict(providers)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._clock = clock
        self._rng = rng or random.Random()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _provider(self, name: str) -> PaymentProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise PaymentStateError(f"no payment provider {name!r} is configured")
        return provider

    def get(self, session_id: str) -> SessionPayment | None:
        with self._pool.connection() as conn:
            return store.get(conn, session_id)

    def history(self, session_id: str) -> tuple[SessionPayment, list[PaymentEvent]] | None:
        """The session's payment and its log, oldest first."""
        with self._pool.connection() as conn:
            row = store.get(conn, session_id)
            return None if row is None else (row, store.events(conn, session_id))

    def flagged(self, limit: int = 100) -> list[SessionPayment]:
        with self._pool.connection() as conn:
            return store.flagged(conn, limit)

    # ------------------------------------------------------------------ authorise

    def preauthorize(
        self,
        *,
        session_id: str,
        provider: str,
        customer: str,
        currency: str,
        amount_minor: int,
        payment_method: str | None = None,
        off_session: bool = False,
    ) -> SessionPayment:
        """Hold ``amount_minor`` (the configured estimate) for the session."""
        chosen = self._provider(provider)
        with self._transaction() as conn:
            store.start(conn, session_id, provider, customer, currency)
            row = store.lock(conn, session_id)
            assert row is not None
            if row.provider != provider or row.currency != currency:
                raise PaymentStateError(
                    f"session {session_id} is already paid with {row.provider} in {row.currency}"
                )
            if row.status != "authorizing":
                return row  # authorised (or failed) before: the same answer
            try:
                payment = chosen.authorize(
                    session_id=session_id,
                    customer=customer,
                    amount_minor=amount_minor,
                    currency=currency,
                    payment_method=payment_method,
                    off_session=off_session,
                    idempotency_key=f"authorize:{session_id}",
                )
            except PaymentDeclined as exc:
                store.update(conn, session_id, status="failed", last_error=str(exc))
                store.log(conn, session_id, "authorize_declined", SYSTEM, detail=str(exc))
                row = store.get(conn, session_id)
                assert row is not None
                return row
            self._record_payment(conn, session_id, payment)
            store.log(conn, session_id, "authorized", SYSTEM, amount_minor=payment.authorized_minor)
            row = store.get(conn, session_id)
            assert row is not None
            return row

    def _record_payment(
        self, conn: psycopg.Connection[Any], session_id: str, payment: Payment
    ) -> None:
        status = {
            PaymentStatus.AUTHORIZED: "authorized",
            PaymentStatus.CAPTURED: "captured",
            PaymentStatus.CANCELED: "canceled",
            PaymentStatus.FAILED: "failed",
            PaymentStatus.REQUIRES_ACTION: "requires_action",
        }[payment.status]
        store.update(
            conn,
            session_id,
            reference=payment.reference,
            status=status,
            authorized_minor=payment.authorized_minor,
            captured_minor=payment.captured_minor,
            refunded_minor=payment.refunded_minor,
        )

    # ------------------------------------------------------------------ capture

    def capture(self, session_id: str, final_cost_minor: int) -> SessionPayment:
        """Collect the session's final cost, at most once (module docstring)."""
        if final_cost_minor < 0:
            raise PaymentStateError("a final cost cannot be negative")
        with self._transaction() as conn:
            row = store.lock(conn, session_id)
            if row is None:
                raise PaymentStateError(f"session {session_id} has no payment to capture")
            if row.status == "captured" or (row.final_cost_minor is not None and row.flagged):
                return row
            if row.status != "authorized" or row.reference is None:
                raise PaymentStateError(
                    f"session {session_id}'s payment is {row.status}, not authorised"
                )
            provider = self._provider(row.provider)
            try:
                result = provider.capture(
                    row.reference, final_cost_minor, idempotency_key=f"capture:{session_id}"
                )
            except PaymentError as exc:
                self._capture_failed(conn, row, final_cost_minor, exc)
            else:
                self._record_payment(conn, session_id, result.payment)
                flagged = (
                    f"final cost above the authorisation by {result.shortfall_minor} "
                    f"{row.currency} minor units"
                    if result.shortfall_minor
                    else None
                )
                store.update(
                    conn,
                    session_id,
                    final_cost_minor=final_cost_minor,
                    shortfall_minor=result.shortfall_minor,
                    flagged=flagged,
                    next_attempt_at=None,
                    last_error=None,
                )
                store.log(
                    conn,
                    session_id,
                    "captured",
                    SYSTEM,
                    amount_minor=result.payment.captured_minor,
                    detail=flagged,
                )
            final = store.get(conn, session_id)
            assert final is not None
            return final

    def _capture_failed(
        self,
        conn: psycopg.Connection[Any],
        row: SessionPayment,
        final_cost_minor: int,
        error: PaymentError,
    ) -> None:
        attempts = row.attempts + 1
        give_up = not error.retryable or attempts >= self._max_attempts
        next_at = (
            None
            if give_up
            else self._clock() + timedelta(seconds=self._backoff.delay(attempts, self._rng))
        )
        store.update(
            conn,
            row.session_id,
            attempts=attempts,
            final_cost_minor=final_cost_minor,
            next_attempt_at=next_at,
            last_error=str(error),
            flagged=f"capture failed: {error}" if give_up else None,
        )
        store.log(
            conn,
            row.session_id,
            "capture_failed",
            SYSTEM,
            amount_minor=final_cost_minor,
            detail=str(error),
        )
        log.warning(
            "capture failed",
            session_id=row.session_id,
            provider=row.provider,
            attempts=attempts,
            retry_at=next_at.isoformat() if next_at else None,
            error=str(error),
        )

    def retry_due(self) -> list[SessionPayment]:
        """Retry every capture whose next try is due."""
        with self._pool.connection() as conn:
            sessions = store.due(conn, self._clock())
        done = []
        for session_id in sessions:
            row = self.get(session_id)
            if row is None or row.final_cost_minor is None:
                continue
            done.append(self.capture(session_id, row.final_cost_minor))
        return done

    # ------------------------------------------------------------------ refund, cancel

    def refund(
        self, session_id: str, amount_minor: int, *, actor: str, reason: str, key: str
    ) -> SessionPayment:
        """Return ``amount_minor`` of the capture; ``key`` identifies the request (a
        retried request with the same key refunds once)."""
        if amount_minor <= 0:
            raise PaymentStateError("a refund must be a positive amount")
        with self._transaction() as conn:
            row = store.lock(conn, session_id)
            if row is None or row.status != "captured" or row.reference is None:
                raise PaymentStateError(f"session {session_id} has no captured payment")
            request = f"refund:{session_id}:{key}"
            if store.logged(conn, request):
                return row  # this request refunded before: the same answer
            if row.refunded_minor + amount_minor > row.captured_minor:
                raise PaymentStateError(
                    f"refunds would exceed the capture ({row.refunded_minor} + "
                    f"{amount_minor} > {row.captured_minor} minor units)"
                )
            provider = self._provider(row.provider)
            refund = provider.refund(
                row.reference, amount_minor, idempotency_key=request, reason=reason
            )
            payment = provider.get(row.reference)
            self._record_payment(conn, session_id, payment)
            store.log(
                conn,
                session_id,
                "refunded",
                actor,
                amount_minor=refund.amount_minor,
                detail=reason,
                provider_event_id=request,
            )
            final = store.get(conn, session_id)
            assert final is not None
            return final

    def cancel(self, session_id: str, *, actor: str, reason: str) -> SessionPayment:
        """Release an uncaptured hold (a start that failed, a session not to be billed)."""
        with self._transaction() as conn:
            row = store.lock(conn, session_id)
            if row is None or row.reference is None:
                raise PaymentStateError(f"session {session_id} has no payment to cancel")
            if row.status == "canceled":
                return row
            if row.status != "authorized":
                raise PaymentStateError(f"session {session_id}'s payment is {row.status}")
            payment = self._provider(row.provider).cancel(
                row.reference, idempotency_key=f"cancel:{session_id}"
            )
            self._record_payment(conn, session_id, payment)
            store.update(conn, session_id, next_attempt_at=None)
            store.log(conn, session_id, "canceled", actor, detail=reason)
            final = store.get(conn, session_id)
            assert final is not None
            return final

    # ------------------------------------------------------------------ webhooks

    def apply_webhook(self, provider: str, event_id: str, event_type: str, reference: str) -> bool:
        """Bring the row in line with the provider's payment after one of its events;
        False when the event was applied before (redelivered) or concerns no session."""
        with self._transaction() as conn:
            session_id = store.by_reference(conn, provider, reference)
            if session_id is None:
                return False
            store.lock(conn, session_id)
            if not store.log(
                conn, session_id, f"webhook:{event_type}", provider, provider_event_id=event_id
            ):
                return False
            self._record_payment(conn, session_id, self._provider(provider).get(reference))
            return True
