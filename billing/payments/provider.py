"""The interface every payment provider implements, and the errors it raises.

A payment follows one lifecycle whatever the provider: ``authorize`` an estimate when an
authorised session starts (a hold on the card or the wallet), ``capture`` the final cost
when the session closed (never more than was authorised: the rest is returned as
``shortfall_minor`` for billing to charge separately or flag), ``cancel`` a hold that is
not needed, ``refund`` (part of) a capture. Amounts are integer minor units of the
payment's currency (cents for EUR).

Every call carries an idempotency key, derived from the session and the operation
(``capture:{session_id}``), so a retried call, a replayed ``sessions.closed`` message or
a crash between the provider's answer and our database commit repeats the first call's
outcome instead of charging twice. Providers are synchronous (the Stripe SDK and psycopg
calls block); async callers run them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class PaymentStatus(StrEnum):
    """Where a payment stands (Stripe's PaymentIntent states, reduced to what billing
    acts on)."""

    AUTHORIZED = "authorized"  # held, capturable
    CAPTURED = "captured"  # (partly) collected; what was not captured is released
    CANCELED = "canceled"  # released without collecting anything
    FAILED = "failed"  # declined or expired; nothing held
    REQUIRES_ACTION = "requires_action"  # the customer must act (3-D Secure)


@dataclass(frozen=True)
class Payment:
    """A provider's payment: the hold and what became of it."""

    provider: str
    reference: str  # the provider's id: PaymentIntent id, wallet hold id, account entry
    currency: str
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    status: PaymentStatus


@dataclass(frozen=True)
class CaptureResult:
    payment: Payment
    # What the final cost exceeded the authorisation by: not captured, to be charged
    # separately or flagged for billing (0 when the authorisation covered it).
    shortfall_minor: int


@dataclass(frozen=True)
class Refund:
    provider: str
    payment_reference: str
    refund_id: str
    amount_minor: int


class PaymentError(Exception):
    """A provider call failed; ``retryable`` says whether the same call (same idempotency
    key) may succeed later. Messages never carry keys or card data."""

    retryable = False


class PaymentDeclined(PaymentError):
    """The card issuer or the wallet refused (insufficient funds, card declined)."""


class PaymentUnavailable(PaymentError):
    """The provider could not be reached or answered 5xx / 429: retry with backoff."""

    retryable = True


class InvalidPaymentRequest(PaymentError):
    """The request cannot succeed as asked: an unknown payment, a refund above what was
    captured, a capture of a cancelled payment."""


@runtime_checkable
class PaymentProvider(Protocol):
    """What billing calls; Stripe, the wallet and postpaid accounts implement it."""

    name: str

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
        """Hold ``amount_minor`` for the session (Stripe: a PaymentIntent with
        ``capture_method=manual`` confirmed with ``payment_method``; wallet: a hold on the
        customer's balance, declined when the balance does not cover it).
        ``off_session``: the customer is not present (a card on file charged at an RFID
        start), so the card issuer does not expect them to authenticate."""
        ...

    def capture(self, reference: str, amount_minor: int, *, idempotency_key: str) -> CaptureResult:
        """Collect ``min(amount_minor, authorised)``; the remainder of the hold is
        released. Capturing an already captured payment with the same key returns the
        first capture."""
        ...

    def cancel(self, reference: str, *, idempotency_key: str) -> Payment:
        """Release a hold that was not captured."""
        ...

    def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, reason: str | None = None
    ) -> Refund:
        """Return part or all of a capture; the refunds of a payment never exceed its
        capture (:class:`InvalidPaymentRequest`)."""
        ...

    def get(self, reference: str) -> Payment:
        """The payment as the provider has it now."""
        ...
