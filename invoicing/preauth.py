"""Pre-authorisation at an authorised start, run by the billing worker every
``preauth_poll_s``: each active session whose id tag has a payment method and no payment
yet (:func:`store.payment_methods.awaiting_preauth`) gets a hold of the estimate
(:func:`billing.payments.preauth.hold_amount`) in its tariff's currency through
:meth:`billing.payments.service.PaymentService.preauthorize`.

State is the database: a session with a payment row is never picked again, and the
service's idempotency key (``authorize:{session_id}``) makes a pass that crashed after
the provider's answer get the same hold when it runs again. A decline is recorded by the
service (status ``failed``) and logged here; a session without a tariff, or a provider
error that is not a decline (Stripe unreachable, not configured), leaves no row: it is
tried again at the next pass, logged once per session; a provider that is unavailable
is not called again in the same pass.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import structlog

from billing.payments.preauth import hold_amount
from billing.payments.provider import PaymentError
from billing.payments.service import PaymentService
from invoicing.pricing import StoredSession, tariff_of
from store import payment_methods as method_store
from store.db import AsyncDb
from store.payments import SessionPayment

log = structlog.get_logger("chargeflow.billing")

PAGE = 100  # sessions per query of a pass (a pass goes through all of them)


class Preauthorizer:
    """One pass per :meth:`run`; remembers which sessions it already logged about."""

    def __init__(self, payments: PaymentService, estimate_minor: int) -> None:
        self._payments = payments
        self._estimate_minor = estimate_minor
        self._reported: set[str] = set()
        self.authorized = 0  # holds made (or found made), for tests and logs
        self.passes = 0

    async def run(self, db: AsyncDb) -> None:
        """One pass; a database outage ends it (the next pass tries again)."""
        waiting: set[str] = set()
        # Providers that answered "unavailable" in this pass: their other sessions wait
        # for the next pass instead of each waiting for a timeout (billing goes on).
        down: set[str] = set()
        after: tuple[datetime, str] | None = None
        try:
            while True:
                page = await method_store.awaiting_preauth(db, after=after, limit=PAGE)
                for session in page:
                    waiting.add(session.session_id)
                    if session.method.provider not in down:
                        await self._preauthorize(db, session, down)
                if len(page) < PAGE:
                    break
                after = (page[-1].started_at, page[-1].session_id)
        except psycopg.OperationalError as exc:
            log.warning("pre-authorisation pass failed; next pass retries", error=str(exc))
            return
        # Forget sessions no longer waiting (authorised, closed): the set stays small.
        self._reported &= waiting
        self.passes += 1

    def _once(self, session_id: str, message: str, **details: object) -> None:
        if session_id not in self._reported:
            self._reported.add(session_id)
            log.warning(message, session_id=session_id, **details)

    async def _preauthorize(
        self, db: AsyncDb, session: method_store.AwaitingPreauth, down: set[str]
    ) -> None:
        applied = await tariff_of(
            db,
            StoredSession(
                session_id=session.session_id,
                charge_point_id=session.charge_point_id,
                connector_id=session.connector_id,
                transaction_id=session.transaction_id,
                id_tag=session.id_tag,
                started_at=session.started_at,
                stopped_at=None,
                meter_start_wh=session.meter_start_wh,
                meter_stop_wh=None,
                energy_wh=None,
            ),
        )
        if applied is None:
            self._once(session.session_id, "no tariff applies: session not pre-authorised")
            return
        amount = hold_amount(self._estimate_minor, applied.tariff)
        if amount is None:
            self._once(session.session_id, "tariff capped at 0: nothing to pre-authorise")
            return
        method = session.method
        try:
            row = await asyncio.to_thread(
                self._payments.preauthorize,
                session_id=session.session_id,
                provider=method.provider,
                customer=method.customer,
                currency=applied.tariff.currency,
                amount_minor=amount,
                payment_method=method.payment_method,
                off_session=True,  # a card on file: the driver is at the station, not in a checkout
            )
        except PaymentError as exc:
            if exc.retryable:
                down.add(method.provider)
            self._once(
                session.session_id,
                "pre-authorisation failed; retried at the next pass",
                provider=method.provider,
                error=str(exc),
            )
            return
        if row.status == "failed":
            log.warning(
                "pre-authorisation declined",
                session_id=session.session_id,
                provider=method.provider,
                error=row.last_error,
            )
            return
        self.authorized += 1
        log.info(
            "session pre-authorised",
            session_id=session.session_id,
            provider=method.provider,
            status=row.status,
            amount_minor=row.authorized_minor,
            currency=row.currency,
        )


def authorize_at_close(
    payments: PaymentService,
    session_id: str,
    method: method_store.PaymentMethod,
    currency: str,
    total_minor: int,
) -> SessionPayment | None:
    """A session that closed before any pre-authorisation pass saw it active (shorter
    than ``preauth_poll_s``, or the worker was down) but whose id tag had a payment
    method at its start: authorise its final cost now, so that it is captured like any
    other. None when there is nothing to collect or the authorisation did not go
    through (a decline: recorded by the service)."""
    if total_minor <= 0:
        return None
    try:
        row = payments.preauthorize(
            session_id=session_id,
            provider=method.provider,
            customer=method.customer,
            currency=currency,
            amount_minor=total_minor,
            payment_method=method.payment_method,
            off_session=True,
        )
    except PaymentError as exc:
        log.warning("authorisation at close failed", session_id=session_id, error=str(exc))
        return None
    log.info(
        "closed before its pre-authorisation: final cost authorised",
        session_id=session_id,
        provider=method.provider,
        status=row.status,
        amount_minor=total_minor,
    )
    return row if row.status == "authorized" else None
