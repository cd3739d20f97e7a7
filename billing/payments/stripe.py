"""The Stripe payment provider: manual-capture PaymentIntents through the official SDK.

``authorize`` creates and confirms a PaymentIntent with ``capture_method=manual`` (a
hold on the card, ``requires_capture``); ``capture`` collects at most what is capturable
and reports the rest of the final cost as a shortfall; ``cancel`` releases the hold;
``refund`` returns part of a capture. Every mutating call carries the caller's
idempotency key, so Stripe replays the first outcome of a retried call instead of
charging twice; the calls are also guarded by the intent's state (a capture of an intent
already ``succeeded`` returns it, a refund already made under the key is found on the
charge), which covers a crash between Stripe's answer and our commit.

Errors become the :mod:`billing.payments.provider` errors with a message of our own
(operation, Stripe's error type and code, HTTP status, request id and Stripe's message
with secrets masked); the SDK's exception is not chained, since its arguments hold the
raw response. :func:`verify_webhook` checks a ``Stripe-Signature`` header on the raw body
before anything parses it. docs/payments.md describes the flow.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe
import structlog

from billing.money import check_currency
from billing.payments.provider import (
    CaptureResult,
    InvalidPaymentRequest,
    Payment,
    PaymentDeclined,
    PaymentError,
    PaymentStatus,
    PaymentUnavailable,
    Refund,
)
from runtime.logs import MASK, redact_text

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"

# PaymentIntent statuses as billing sees them. ``requires_confirmation`` cannot last: we
# confirm on creation, so an intent left there did not go through. ``processing`` is
# handled apart (not final: ask again later).
_STATUSES = {
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.CAPTURED,
    "canceled": PaymentStatus.CANCELED,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "requires_payment_method": PaymentStatus.FAILED,
    "requires_confirmation": PaymentStatus.FAILED,
}
# The reasons Stripe's refund API accepts; any other reason goes to the refund's metadata.
_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
# The refunds of a charge come with the intent when expanded this way (one GET).
_EXPAND_REFUNDS = ["latest_charge.refunds"]

# 13 to 19 digits, optionally grouped by spaces or dashes: a card number (PAN).
_CARD_NUMBER = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")

T = TypeVar("T")


class WebhookSignatureError(PaymentError):
    """A webhook whose ``Stripe-Signature`` is missing, malformed, does not match the
    body or is outside the timestamp tolerance: reject it (HTTP 400), do not parse it."""


def status_of(intent_status: str) -> PaymentStatus:
    """The :class:`PaymentStatus` of a PaymentIntent status.

    >>> status_of("requires_capture"), status_of("requires_payment_method")
    (<PaymentStatus.AUTHORIZED: 'authorized'>, <PaymentStatus.FAILED: 'failed'>)
    """
    try:
        return _STATUSES[intent_status]
    except KeyError:
        # "processing" (or a status newer than this code): not final yet.
        raise PaymentUnavailable(f"stripe payment is {intent_status!r}; ask again later") from None


def is_customer_id(customer: str) -> bool:
    """Whether ``customer`` is a Stripe customer id (else it is our own customer
    reference, which Stripe does not know).

    >>> is_customer_id("cus_Nffrfe8UG3hTEp"), is_customer_id("driver-42")
    (True, False)
    """
    return customer.startswith("cus_") and len(customer) > 4


class StripeProvider:
    """:class:`~billing.payments.provider.PaymentProvider` on Stripe's PaymentIntents.

    ``api_base`` points the SDK at another server speaking the Stripe API (the tests'
    local one); ``max_network_retries`` lets the SDK retry a dropped connection, a 409,
    429 or 5xx itself, with the same idempotency key; ``timeout_s`` bounds each request.
    """

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        max_network_retries: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe API key is required")
        self._api_key = api_key
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )

    def __repr__(self) -> str:
        return f"StripeProvider(api_key={MASK!r})"

    # ------------------------------------------------------------------ operations

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
        if amount_minor <= 0:
            raise InvalidPaymentRequest(f"stripe authorize: amount must be > 0, got {amount_minor}")
        if not payment_method:
            raise InvalidPaymentRequest("stripe authorize: a payment method is required")
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": check_currency(currency).lower(),
            "capture_method": "manual",
            "confirm": True,
            "payment_method": payment_method,
            "metadata": {"session_id": session_id},
        }
        if is_customer_id(customer):
            params["customer"] = customer
        if off_session:  # no checkout page to authenticate on: the issuer may exempt it or
            params["off_session"] = True  # decline with authentication_required
        intent = self._call(
            "authorize",
            session_id,
            lambda: self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        payment = self._payment(intent)
        log.info(
            "stripe payment authorized",
            session_id=session_id,
            reference=payment.reference,
            status=payment.status.value,
            amount_minor=amount_minor,
        )
        return payment

    def capture(self, reference: str, amount_minor: int, *, idempotency_key: str) -> CaptureResult:
        if amount_minor < 0:
            raise InvalidPaymentRequest(f"stripe capture: amount must be >= 0, got {amount_minor}")
        intent = self._retrieve("capture", reference)
        if intent.status == "succeeded":  # captured before (a retry): its outcome stands
            return self._capture_result(intent, amount_minor)
        if intent.status != "requires_capture":
            raise InvalidPaymentRequest(
                f"stripe capture ({reference}): the payment is {intent.status}, not capturable"
            )
        if amount_minor == 0:  # nothing to collect: Stripe captures no zero, release the hold
            cancelled = self.cancel(reference, idempotency_key=idempotency_key)
            return CaptureResult(payment=cancelled, shortfall_minor=0)
        to_capture = min(amount_minor, intent.amount_capturable)
        captured = self._call(
            "capture",
            reference,
            lambda: self._client.v1.payment_intents.capture(
                reference,
                params={"amount_to_capture": to_capture, "expand": _EXPAND_REFUNDS},
                options={"idempotency_key": idempotency_key},
            ),
        )
        result = self._capture_result(captured, amount_minor)
        log.info(
            "stripe payment captured",
            reference=reference,
            captured_minor=result.payment.captured_minor,
            shortfall_minor=result.shortfall_minor,
        )
        return result

    def cancel(self, reference: str, *, idempotency_key: str) -> Payment:
        current = self._retrieve("cancel", reference)
        if current.status == "canceled":  # cancelled before (a retry): it stands
            return self._payment(current)
        intent = self._call(
            "cancel",
            reference,
            lambda: self._client.v1.payment_intents.cancel(
                reference,
                params={"expand": _EXPAND_REFUNDS},
                options={"idempotency_key": idempotency_key},
            ),
        )
        payment = self._payment(intent)
        log.info("stripe payment canceled", reference=reference, status=payment.status.value)
        return payment

    def refund(
        self, reference: str, amount_minor: int, *, idempotency_key: str, reason: str | None = None
    ) -> Refund:
        intent = self._retrieve("refund", reference)
        earlier = _refund_made_with(intent, idempotency_key)
        if earlier is not None:  # made before (a retry whose answer was lost): it stands
            return self._refund(reference, earlier)
        refunded = _amount_refunded(intent)
        if amount_minor <= 0 or refunded + amount_minor > intent.amount_received:
            raise InvalidPaymentRequest(
                f"stripe refund ({reference}): {amount_minor} with {refunded} refunded "
                f"already would exceed the {intent.amount_received} captured"
            )
        metadata = {"idempotency_key": idempotency_key}
        params: dict[str, Any] = {"payment_intent": reference, "amount": amount_minor}
        if reason in _REFUND_REASONS:
            params["reason"] = reason
        elif reason:
            metadata["reason"] = reason
        params["metadata"] = metadata
        made = self._call(
            "refund",
            reference,
            lambda: self._client.v1.refunds.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        log.info("stripe payment refunded", reference=reference, refund_id=made.id)
        return self._refund(reference, made)

    def get(self, reference: str) -> Payment:
        return self._payment(self._retrieve("get", reference))

    # --------------------------------------------------------------------- helpers

    def _retrieve(self, operation: str, reference: str) -> stripe.PaymentIntent:
        # A GET: Stripe ignores idempotency keys on reads, none is sent.
        return self._call(
            operation,
            reference,
            lambda: self._client.v1.payment_intents.retrieve(
                reference, params={"expand": _EXPAND_REFUNDS}
            ),
        )

    def _payment(self, intent: stripe.PaymentIntent) -> Payment:
        return Payment(
            provider=self.name,
            reference=intent.id,
            currency=intent.currency.upper(),
            authorized_minor=intent.amount,
            captured_minor=intent.amount_received,
            refunded_minor=_amount_refunded(intent),
            status=status_of(intent.status),
        )

    def _capture_result(self, intent: stripe.PaymentIntent, amount_minor: int) -> CaptureResult:
        payment = self._payment(intent)
        return CaptureResult(
            payment=payment, shortfall_minor=max(0, amount_minor - payment.captured_minor)
        )

    def _refund(self, reference: str, refund: stripe.Refund) -> Refund:
        return Refund(
            provider=self.name,
            payment_reference=reference,
            refund_id=refund.id,
            amount_minor=refund.amount,
        )

    def _call(self, operation: str, reference: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except stripe.StripeError as exc:
            error = map_error(exc, operation, reference, secrets=(self._api_key,))
            log.warning(
                "stripe call failed",
                operation=operation,
                reference=reference,
                error=str(error),
                retryable=error.retryable,
            )
            raise error from None


def _charge(intent: stripe.PaymentIntent) -> stripe.Charge | None:
    charge = intent.latest_charge
    return charge if isinstance(charge, stripe.Charge) else None


def _amount_refunded(intent: stripe.PaymentIntent) -> int:
    charge = _charge(intent)
    return charge.amount_refunded if charge is not None else 0


def _refund_made_with(intent: stripe.PaymentIntent, idempotency_key: str) -> stripe.Refund | None:
    """The refund of the intent's charge made under ``idempotency_key`` (we store the key
    in its metadata), if any. The charge lists its first 10 refunds; more on one session
    are not expected."""
    charge = _charge(intent)
    refunds = charge.refunds if charge is not None else None
    for refund in refunds.data if refunds is not None else ():
        metadata: Any = refund.metadata or {}
        # Indexing, not .get: the SDK's objects refuse dict methods.
        if "idempotency_key" in metadata and metadata["idempotency_key"] == idempotency_key:
            return refund
    return None


# ---------------------------------------------------------------------- errors


def map_error(
    exc: stripe.StripeError, operation: str, reference: str, *, secrets: tuple[str, ...] = ()
) -> PaymentError:
    """The provider error for an SDK error: declined, unavailable (retryable) or invalid,
    with a message naming what failed and nothing secret."""
    message = _describe(exc, operation, reference, secrets)
    if isinstance(exc, stripe.CardError):
        return PaymentDeclined(message)
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return PaymentUnavailable(message)
    if isinstance(exc, stripe.IdempotencyError | stripe.InvalidRequestError):
        return InvalidPaymentRequest(message)
    if isinstance(exc, stripe.APIError) and (exc.http_status is None or exc.http_status >= 500):
        return PaymentUnavailable(message)
    # Authentication and permission errors (a wrong or restricted key): retrying the
    # same call cannot help; someone has to fix the configuration.
    return PaymentError(message)


def _describe(
    exc: stripe.StripeError, operation: str, reference: str, secrets: tuple[str, ...]
) -> str:
    error = exc.error
    parts = [type(exc).__name__]
    for detail in (
        exc.code or (error.code if error is not None else None),
        getattr(error, "decline_code", None),
    ):
        if detail:
            parts.append(str(detail))
    if exc.http_status is not None:
        parts.append(f"HTTP {exc.http_status}")
    if exc.request_id:
        parts.append(f"request {exc.request_id}")
    text = f"stripe {operation} ({reference}): {', '.join(parts)}"
    if exc.user_message:
        one_line = " ".join(str(exc.user_message).split())
        text += f": {_mask(one_line[:300], secrets)}"
    return text


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with the given secrets, card numbers and every known secret pattern masked.

    >>> _mask("Invalid API Key provided: sk_test_abc123 (key k-1)", ("k-1",))
    'Invalid API Key provided: sk_test_*** (key ***)'
    >>> _mask("card 4000 0000 0000 0002 declined, amount 12000", ())
    'card *** declined, amount 12000'
    """
    for value in secrets:
        if value:
            text = text.replace(value, MASK)
    return _CARD_NUMBER.sub(MASK, redact_text(text))


# --------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event: ``type`` (``payment_intent.succeeded``...) and the object
    it is about (``data.object``, a PaymentIntent, a Charge...)."""

    id: str
    type: str
    created: int
    livemode: bool
    object: Mapping[str, Any]


def webhook_timestamp(signature_header: str) -> int:
    """The ``t=`` of a ``Stripe-Signature`` header.

    >>> webhook_timestamp("t=1492774577,v1=5257a869e7,v0=6ffbb59b2300aae63f2724")
    1492774577
    """
    for item in signature_header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    raise WebhookSignatureError("stripe webhook: the Stripe-Signature header has no timestamp")


def verify_webhook(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> WebhookEvent:
    """The event in ``payload`` (the raw request body, before any parsing) once its
    ``Stripe-Signature`` is verified: an HMAC-SHA256 with ``secret`` over
    ``"{t}.{body}"`` that matches one of the header's ``v1`` signatures, with ``t``
    within ``tolerance_s`` of ``now`` (default: the clock). Else
    :class:`WebhookSignatureError`; nothing of the header or the secret is in its message.
    """
    if not signature_header:
        raise WebhookSignatureError("stripe webhook: no Stripe-Signature header")
    if not secret:
        raise WebhookSignatureError("stripe webhook: no webhook secret configured")
    timestamp = webhook_timestamp(signature_header)
    try:
        # Our own tolerance check below (the SDK's reads the clock and accepts any future t).
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=None)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise WebhookSignatureError(
            "stripe webhook: no v1 signature of the header matches the body"
        ) from None
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise WebhookSignatureError(
            f"stripe webhook: signed {age:.0f} s from now, outside the {tolerance_s} s tolerance"
        )
    return _event(payload)


def _event(payload: bytes) -> WebhookEvent:
    try:
        event = json.loads(payload)
        data_object = event["data"]["object"]
        if event.get("object") != "event" or not isinstance(data_object, dict):
            raise ValueError(event.get("object"))
        return WebhookEvent(
            id=str(event["id"]),
            type=str(event["type"]),
            created=int(event.get("created", 0)),
            livemode=bool(event.get("livemode", False)),
            object=data_object,
        )
    except (ValueError, KeyError, TypeError):
        raise InvalidPaymentRequest(
            "stripe webhook: the signed body is not a Stripe event"
        ) from None
