"""The Stripe provider through the official SDK over real HTTP, against a local server
speaking the Stripe API (tests/support/fake_stripe.py): the hold, capture, cancel and
refund flows, idempotency keys, retries, error mapping, no secret in any error or log,
and webhook signatures computed here with hmac per Stripe's documented scheme."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from structlog.testing import capture_logs

from billing.payments.provider import (
    InvalidPaymentRequest,
    Payment,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    PaymentStatus,
    PaymentUnavailable,
)
from billing.payments.settings import StripeSettings
from billing.payments.stripe import StripeProvider, WebhookSignatureError, verify_webhook
from runtime.settings import SettingsError
from tests.support.fake_stripe import FakeStripe, fake_stripe

pytestmark = pytest.mark.integration

SESSION = "sess-0001"
CUSTOMER = "cus_Q1w2e3r4t5"
WEBHOOK_SECRET = "whsec_" + "k3y" * 10


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


@pytest.fixture
def provider(fake: FakeStripe) -> StripeProvider:
    return StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5)


def authorize(
    provider: StripeProvider, amount: int = 2500, *, key: str = f"authorize:{SESSION}", **kw: Any
) -> Payment:
    args: dict[str, Any] = {
        "session_id": SESSION,
        "customer": CUSTOMER,
        "amount_minor": amount,
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        "idempotency_key": key,
        **kw,
    }
    return provider.authorize(**args)


# ------------------------------------------------------------------ authorize


def test_authorize_holds_the_estimate_with_a_manual_capture_intent(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    assert isinstance(provider, PaymentProvider)
    payment = authorize(provider)
    assert payment.status is PaymentStatus.AUTHORIZED
    assert (payment.provider, payment.currency) == ("stripe", "EUR")
    assert (payment.authorized_minor, payment.captured_minor, payment.refunded_minor) == (
        2500,
        0,
        0,
    )
    [create] = fake.calls("POST", "/v1/payment_intents")
    assert create.params == {
        "amount": "2500",
        "currency": "eur",
        "capture_method": "manual",
        "confirm": "true",
        "payment_method": "pm_card_visa",
        "customer": CUSTOMER,
        "metadata[session_id]": SESSION,
    }
    assert create.idempotency_key == f"authorize:{SESSION}"
    assert create.headers["authorization"] == f"Bearer {fake.api_key}"
    assert fake.intents[payment.reference]["status"] == "requires_capture"


def test_our_own_customer_reference_is_not_sent_as_a_stripe_customer(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    authorize(provider, customer="driver-42")
    [create] = fake.calls("POST", "/v1/payment_intents")
    assert "customer" not in create.params


def test_a_repeated_authorize_replays_the_first_hold(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    first = authorize(provider)
    again = authorize(provider)
    assert again.reference == first.reference
    assert len(fake.intents) == 1
    with pytest.raises(InvalidPaymentRequest, match="IdempotencyError"):
        authorize(provider, amount=9999)  # same key, other parameters
    assert len(fake.intents) == 1


def test_3ds_and_declines(provider: StripeProvider) -> None:
    action = authorize(provider, key="a1", payment_method="pm_card_authenticationRequired")
    assert action.status is PaymentStatus.REQUIRES_ACTION
    with pytest.raises(PaymentDeclined, match="card_declined, generic_decline, HTTP 402") as info:
        authorize(provider, key="a2", payment_method="pm_card_chargeDeclined")
    assert info.value.retryable is False


def test_bad_requests_are_refused_before_calling_stripe(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    with pytest.raises(InvalidPaymentRequest, match="payment method"):
        authorize(provider, payment_method=None)
    with pytest.raises(InvalidPaymentRequest, match="> 0"):
        authorize(provider, amount=0)
    assert fake.requests == []


# -------------------------------------------------------------------- capture


def test_capture_of_less_than_the_hold_collects_the_final_cost(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    result = provider.capture(hold.reference, 1834, idempotency_key=f"capture:{SESSION}")
    assert result.payment.status is PaymentStatus.CAPTURED
    assert (result.payment.captured_minor, result.shortfall_minor) == (1834, 0)
    [capture] = fake.calls("POST", "/capture")
    assert capture.params["amount_to_capture"] == "1834"
    assert capture.idempotency_key == f"capture:{SESSION}"
    assert fake.intents[hold.reference]["amount_received"] == 1834


def test_capture_above_the_hold_is_capped_and_reports_the_shortfall(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider, 2500)
    result = provider.capture(hold.reference, 3100, idempotency_key="c")
    assert (result.payment.captured_minor, result.shortfall_minor) == (2500, 600)
    [capture] = fake.calls("POST", "/capture")
    assert capture.params["amount_to_capture"] == "2500"


def test_capturing_a_captured_payment_returns_it_without_a_second_capture(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    first = provider.capture(hold.reference, 2000, idempotency_key="c")
    again = provider.capture(hold.reference, 2000, idempotency_key="c")
    other = provider.capture(hold.reference, 2700, idempotency_key="c")  # a bigger final cost
    assert again == first
    assert (other.payment.captured_minor, other.shortfall_minor) == (2000, 700)
    assert len(fake.calls("POST", "/capture")) == 1


def test_a_capture_failed_with_500_retried_with_its_key_captures_once(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    fake.fail_next("500", path="/capture")
    with pytest.raises(PaymentUnavailable) as info:
        provider.capture(hold.reference, 2000, idempotency_key="capture:s1")
    assert info.value.retryable is True
    result = provider.capture(hold.reference, 2000, idempotency_key="capture:s1")
    assert result.payment.captured_minor == 2000
    captures = fake.calls("POST", "/capture")
    assert [c.idempotency_key for c in captures] == ["capture:s1", "capture:s1"]
    assert fake.charges[fake.intents[hold.reference]["latest_charge"]]["amount_captured"] == 2000


def test_a_capture_whose_answer_was_lost_is_found_captured_on_the_retry(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    fake.fail_next("drop_after", path="/capture")
    with pytest.raises(PaymentUnavailable, match="APIConnectionError"):
        provider.capture(hold.reference, 2000, idempotency_key="capture:s1")
    assert fake.intents[hold.reference]["status"] == "succeeded"  # it did run
    result = provider.capture(hold.reference, 2000, idempotency_key="capture:s1")
    assert (result.payment.status, result.payment.captured_minor) == (PaymentStatus.CAPTURED, 2000)
    assert len(fake.calls("POST", "/capture")) == 1


def test_the_sdk_retries_a_dropped_capture_with_the_same_key(fake: FakeStripe) -> None:
    provider = StripeProvider(fake.api_key, api_base=fake.api_base, max_network_retries=1)
    hold = authorize(provider)
    fake.fail_next("drop_after", path="/capture")  # captured, the answer lost
    result = provider.capture(hold.reference, 2000, idempotency_key="capture:s1")
    # The SDK's retry got the saved answer: running it again would have been refused
    # (the intent is no longer capturable).
    assert result.payment.captured_minor == 2000
    keys = [c.idempotency_key for c in fake.calls("POST", "/capture")]
    assert keys == ["capture:s1", "capture:s1"]


def test_concurrent_captures_of_one_session_capture_once(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: provider.capture(hold.reference, 2000, idempotency_key="c"), range(4)
            )
        )
    assert {r.payment.captured_minor for r in results} == {2000}
    charge = fake.charges[fake.intents[hold.reference]["latest_charge"]]
    assert (charge["amount_captured"], fake.intents[hold.reference]["status"]) == (
        2000,
        "succeeded",
    )


def test_a_capture_of_zero_releases_the_hold(provider: StripeProvider, fake: FakeStripe) -> None:
    hold = authorize(provider)
    result = provider.capture(hold.reference, 0, idempotency_key="capture:s1")
    assert result.payment.status is PaymentStatus.CANCELED
    assert fake.calls("POST", "/capture") == []
    [cancel] = fake.calls("POST", "/cancel")
    assert cancel.idempotency_key == "capture:s1"


# --------------------------------------------------------------- cancel, get


def test_cancel_releases_a_hold_and_a_cancelled_payment_is_not_captured(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    cancelled = provider.cancel(hold.reference, idempotency_key=f"cancel:{SESSION}")
    assert cancelled.status is PaymentStatus.CANCELED
    assert fake.calls("POST", "/cancel")[0].idempotency_key == f"cancel:{SESSION}"
    assert provider.get(hold.reference).status is PaymentStatus.CANCELED
    again = provider.cancel(hold.reference, idempotency_key="cancel:other")  # a late retry
    assert again == cancelled
    assert len(fake.calls("POST", "/cancel")) == 1
    with pytest.raises(InvalidPaymentRequest, match="canceled, not capturable"):
        provider.capture(hold.reference, 100, idempotency_key="c")
    assert fake.calls("POST", "/capture") == []


def test_cancelling_a_captured_payment_is_refused(provider: StripeProvider) -> None:
    hold = authorize(provider)
    provider.capture(hold.reference, 2000, idempotency_key="c")
    with pytest.raises(InvalidPaymentRequest, match="payment_intent_unexpected_state"):
        provider.cancel(hold.reference, idempotency_key="x")


# -------------------------------------------------------------------- refunds


def test_refunds_up_to_the_capture(provider: StripeProvider, fake: FakeStripe) -> None:
    hold = authorize(provider)
    provider.capture(hold.reference, 2000, idempotency_key="c")
    refund = provider.refund(
        hold.reference, 500, idempotency_key="refund:s1:1", reason="requested_by_customer"
    )
    assert (refund.provider, refund.payment_reference, refund.amount_minor) == (
        "stripe",
        hold.reference,
        500,
    )
    assert refund.refund_id.startswith("re_")
    [post] = fake.calls("POST", "/v1/refunds")
    assert post.params == {
        "payment_intent": hold.reference,
        "amount": "500",
        "reason": "requested_by_customer",
        "metadata[idempotency_key]": "refund:s1:1",
    }
    assert post.idempotency_key == "refund:s1:1"
    provider.refund(hold.reference, 1500, idempotency_key="refund:s1:2", reason="meter fault")
    assert fake.calls("POST", "/v1/refunds")[1].params["metadata[reason]"] == "meter fault"
    assert provider.get(hold.reference).refunded_minor == 2000


def test_a_refund_above_the_capture_is_refused_locally(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    provider.capture(hold.reference, 2000, idempotency_key="c")
    provider.refund(hold.reference, 1500, idempotency_key="r1")
    with pytest.raises(InvalidPaymentRequest, match="would exceed the 2000 captured"):
        provider.refund(hold.reference, 501, idempotency_key="r2")
    with pytest.raises(InvalidPaymentRequest):
        provider.refund(hold.reference, 0, idempotency_key="r3")
    assert len(fake.calls("POST", "/v1/refunds")) == 1
    assert provider.get(hold.reference).refunded_minor == 1500


def test_a_refund_whose_answer_was_lost_is_not_made_twice(
    provider: StripeProvider, fake: FakeStripe
) -> None:
    hold = authorize(provider)
    provider.capture(hold.reference, 2000, idempotency_key="c")
    fake.fail_next("drop_after", path="/v1/refunds")
    with pytest.raises(PaymentUnavailable):
        provider.refund(hold.reference, 2000, idempotency_key="refund:s1")
    refund = provider.refund(hold.reference, 2000, idempotency_key="refund:s1")  # full again
    assert refund.amount_minor == 2000
    assert len(fake.calls("POST", "/v1/refunds")) == 1
    assert provider.get(hold.reference).refunded_minor == 2000


# -------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ("500", PaymentUnavailable, "APIError, HTTP 500"),
        ("500_saved", PaymentUnavailable, "APIError, HTTP 500"),
        ("429", PaymentUnavailable, "RateLimitError, rate_limit, HTTP 429"),
        ("drop_before", PaymentUnavailable, "APIConnectionError"),
        ("card_declined", PaymentDeclined, "CardError, card_declined"),
    ],
)
def test_errors_map_to_the_provider_errors(
    provider: StripeProvider, fake: FakeStripe, fault: str, error: type[PaymentError], text: str
) -> None:
    fake.fail_next(fault)
    with pytest.raises(error, match=text) as info:
        authorize(provider)
    assert type(info.value) is error
    assert info.value.retryable is (error is PaymentUnavailable)
    assert info.value.__cause__ is None  # the SDK's exception (raw response) is not chained


def test_an_unknown_payment_is_an_invalid_request(provider: StripeProvider) -> None:
    with pytest.raises(InvalidPaymentRequest, match="resource_missing, HTTP 404"):
        provider.get("pi_unknown")


def test_no_secret_or_card_number_in_errors_or_logs(fake: FakeStripe) -> None:
    wrong_key = "sk_test_" + "W" * 24
    wrong = StripeProvider(wrong_key, api_base=fake.api_base)
    fake.decline_message = "Your card 4000 0000 0000 0002 was declined."
    right = StripeProvider(fake.api_key, api_base=fake.api_base)
    errors: list[PaymentError] = []
    with capture_logs() as events:
        for call in (
            lambda: authorize(wrong),
            lambda: wrong.get("pi_x"),
            lambda: authorize(right, payment_method="pm_card_chargeDeclined"),
        ):
            with pytest.raises(PaymentError) as info:
                call()
            errors.append(info.value)
    assert "Invalid API Key provided: ***" in str(errors[0])  # the fake echoed it in full
    assert type(errors[0]) is PaymentError
    assert errors[0].retryable is False
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(wrong), repr(right)]
    texts += [repr(event) for event in events]
    assert len(events) >= 3
    for text in texts:
        for secret in (wrong_key, fake.api_key, "4000 0000 0000 0002", "4000000000000002"):
            assert secret not in text, text


# ------------------------------------------------------------------- webhooks


def signed(payload: bytes, timestamp: int, secret: str = WEBHOOK_SECRET) -> str:
    """A ``Stripe-Signature`` header per Stripe's scheme: HMAC-SHA256 of ``"{t}.{body}"``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


EVENT = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_780_000_000,
        "livemode": False,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount_received": 1834}},
    }
).encode()
T = 1_780_000_000


def test_a_webhook_with_a_valid_signature_is_the_event() -> None:
    event = verify_webhook(EVENT, signed(EVENT, T), WEBHOOK_SECRET, now=T + 299)
    assert (event.id, event.type, event.object["amount_received"]) == (
        "evt_1",
        "payment_intent.succeeded",
        1834,
    )
    # Any v1 of the header may match (Stripe sends several while a secret is rolled).
    header = f"t={T},v1={'0' * 64},{signed(EVENT, T).split(',')[1]},v0=abc"
    assert verify_webhook(EVENT, header, WEBHOOK_SECRET, now=T).id == "evt_1"


@pytest.mark.parametrize(
    ("payload", "header", "now", "text"),
    [
        (EVENT.replace(b"1834", b"9834"), signed(EVENT, T), T, "no v1 signature"),  # tampered
        (EVENT, signed(EVENT, T, "whsec_other"), T, "no v1 signature"),  # another secret
        # t replaced (to pass the tolerance) while the signature is over the old one
        (EVENT, f"t={T}," + signed(EVENT, T - 900).split(",")[1], T, "no v1 signature"),
        (EVENT, signed(EVENT, T), T + 301, "outside the 300 s tolerance"),  # too old
        (EVENT, signed(EVENT, T), T - 301, "outside the 300 s tolerance"),  # from the future
        (EVENT, None, T, "no Stripe-Signature header"),
        (EVENT, "", T, "no Stripe-Signature header"),
        (EVENT, signed(EVENT, T).split(",")[1], T, "no timestamp"),
        (EVENT, signed(EVENT, T).replace("v1=", "v0="), T, "no v1 signature"),
        (b"\xff" + EVENT, signed(b"\xff" + EVENT, T), T, "no v1 signature"),  # not UTF-8
    ],
)
def test_a_webhook_without_a_valid_signature_is_refused(
    payload: bytes, header: str | None, now: int, text: str
) -> None:
    with pytest.raises(WebhookSignatureError, match=text) as info:
        verify_webhook(payload, header, WEBHOOK_SECRET, now=now)
    assert WEBHOOK_SECRET not in str(info.value)
    assert not header or header not in str(info.value)
    assert info.value.__cause__ is None


def test_a_signed_body_that_is_not_an_event_is_invalid() -> None:
    body = b'{"object": "list"}'
    with pytest.raises(InvalidPaymentRequest, match="not a Stripe event"):
        verify_webhook(body, signed(body, T), WEBHOOK_SECRET, now=T)


# ------------------------------------------------------------------- settings


def test_settings_make_the_provider_and_keep_the_secrets(
    fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEFLOW_STRIPE_API_KEY", fake.api_key)
    monkeypatch.setenv("CHARGEFLOW_STRIPE_API_BASE", fake.api_base)
    monkeypatch.setenv("CHARGEFLOW_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings = StripeSettings.load()
    assert fake.api_key not in repr(settings)
    assert WEBHOOK_SECRET not in repr(settings)
    assert settings.stripe_webhook_tolerance_s == 300
    assert authorize(settings.provider()).status is PaymentStatus.AUTHORIZED
    assert settings.verify_webhook(EVENT, signed(EVENT, T), now=T).id == "evt_1"
    with pytest.raises(SettingsError, match="CHARGEFLOW_STRIPE_API_KEY is required"):
        StripeSettings.load(stripe_api_key=None).provider()
    with pytest.raises(SettingsError, match="CHARGEFLOW_STRIPE_API_BASE") as info:
        StripeSettings.load(stripe_api_base="not a url")
    assert fake.api_key not in str(info.value)
