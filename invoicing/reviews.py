"""A billing clerk's decisions on held sessions, carried out by the billing worker (the
one issuer of CDRs), looked for every ``review_poll_s``:

- released: the session as stored (``sessions``) billed as it stands
  (:func:`invoicing.invoice.bill_session`, without the quality hold): its CDR stored,
  published on ``billing.cdrs``, its payment captured;
- corrected: the same with the clerk's energy, spread over the session as its samples'
  register rose (linearly without usable samples); the CDR's ``energy_quality`` is
  ``corrected`` and its ``review`` says who corrected what and why;
- written off: no CDR; an uncaptured payment hold is released
  (:meth:`~billing.payments.service.PaymentService.cancel`, as the clerk, the note as
  the reason).

A decision is marked settled last (:func:`store.billing_reviews.settle_review`): a crash
before repeats the steps, and each is idempotent (the CDR's id comes from the session and
its ``last_updated`` is the decision's time, so a second bill returns the stored CDR;
consumers of ``billing.cdrs`` keep one per id; a capture or release is answered from the
payment's row). A decision that cannot be carried out (the session is not stored, no
tariff applies, it cannot be priced, the payment refuses) is logged once and left
unsettled, and tried again ``retry_after_s`` later (a tariff assigned since is found).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from billing.cdrs import CdrParty, ClerkDecision
from billing.payments.provider import PaymentError
from billing.payments.service import PaymentService
from invoicing.invoice import Invoiced, bill_session
from store import billing_reviews as review_store
from store.billing_reviews import Decision
from store.db import AsyncDb

log = structlog.get_logger("chargeflow.billing")

Publish = Callable[[Invoiced], Awaitable[None]]
Capture = Callable[[Invoiced], None]  # blocking: run in a thread
# A payment still being authorised is waited for; any other uncaptured state but
# "authorized" has no hold to release.
_AUTHORIZING = "authorizing"


class ReviewSettler:
    def __init__(
        self,
        party: CdrParty,
        *,
        retry_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.party = party
        self.settled = 0  # decisions carried out, for tests and logs
        self.deferred = 0  # tries that could not carry a decision out
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._retry_at: dict[str, float] = {}  # session -> when its decision is tried again
        self._reported: set[str] = set()  # sessions whose failure was logged

    async def settle_due(
        self, db: AsyncDb, payments: PaymentService, publish: Publish, capture: Capture
    ) -> int:
        """Carry out every decided, unsettled review (oldest decision first); how many."""
        now = self._clock()
        self._retry_at = {s: at for s, at in self._retry_at.items() if at > now}
        decisions = await review_store.unsettled_decisions(db, skip=sorted(self._retry_at))
        done = 0
        for decision in decisions:
            if decision.status == "written_off":
                settled = await self._write_off(db, payments, decision)
            else:
                settled = await self._bill(db, decision, publish, capture)
            done += settled
        self.settled += done
        return done

    def _try_later(self, decision: Decision, why: str) -> bool:
        self._retry_at[decision.session_id] = self._clock() + self.retry_after_s
        self.deferred += 1
        if decision.session_id in self._reported:
            return False
        self._reported.add(decision.session_id)
        log.warning(
            "review decision not carried out",
            session_id=decision.session_id,
            status=decision.status,
            reason=why,
        )
        return False

    async def _bill(
        self, db: AsyncDb, decision: Decision, publish: Publish, capture: Capture
    ) -> bool:
        session = decision.session
        if session is None:
            return self._try_later(decision, "the session is not stored")
        clerk = ClerkDecision(
            action="correct" if decision.status == "corrected" else "release",
            by=decision.decided_by,
            at=session.closed_at,
            note=decision.note,
            corrected_energy_wh=decision.corrected_energy_wh,
            measured_energy_wh=session.energy_wh if decision.status == "corrected" else None,
        )
        outcome = await bill_session(db, session, self.party, decision=clerk)
        if outcome.cdr is None:
            return self._try_later(decision, "; ".join(outcome.held))
        await publish(outcome)
        await asyncio.to_thread(capture, outcome)
        cdr_id = str(outcome.cdr["id"])
        await review_store.settle_review(
            db, decision.session_id, cdr_id=cdr_id, note=f"CDR {cdr_id} issued"
        )
        self._reported.discard(decision.session_id)
        log.info("held session billed", session_id=decision.session_id, cdr_id=cdr_id)
        return True

    async def _write_off(self, db: AsyncDb, payments: PaymentService, decision: Decision) -> bool:
        payment = await asyncio.to_thread(payments.get, decision.session_id)
        outcome = "no payment to release"
        if payment is not None and payment.status == _AUTHORIZING:
            return False  # its hold is being placed: released on a later poll
        if payment is not None and payment.status == "authorized":
            try:
                await asyncio.to_thread(
                    payments.cancel,
                    decision.session_id,
                    actor=decision.decided_by,
                    reason=decision.note or "written off",
                )
            except PaymentError as exc:
                if exc.retryable:  # the provider is away: the next poll tries again
                    log.warning(
                        "hold release failed", session_id=decision.session_id, error=str(exc)
                    )
                    return False
                return self._try_later(decision, f"the payment hold was not released: {exc}")
            outcome = "payment hold released"
        elif payment is not None:
            outcome = f"payment {payment.status}: no hold to release"
        await review_store.settle_review(db, decision.session_id, cdr_id=None, note=outcome)
        log.info("held session written off", session_id=decision.session_id, payment=outcome)
        return True
