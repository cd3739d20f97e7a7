"""A session's payment through the API on the real database, with the real Stripe SDK
against the local Stripe server: roles, authorise / capture (once) / refund (with an
Idempotency-Key, never above the capture) / cancel, problem details for every refusal,
and Stripe's webhook verified by its signature and applied once."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.payments import PaymentsSetup
from billing.payments.stripe import StripeProvider, verify_webhook
from tests.support.api import api_client, assert_problem, auth
from tests.support.fake_stripe import FakeStripe, fake_stripe

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "whsec_test_api_payments_0123456789"
SESSION = str(uuid.UUID("7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"))
PAYMENT = f"/v1/sessions/{SESSION}/payment"
AUTHORIZE = {
    "provider": "stripe",
    "customer": "cus_ALICE",
    "currency": "EUR",
    "amount_minor": 3000,
    "payment_method": "pm_card_visa",
}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    yield from fake_stripe()


@pytest.fixture
def setup(fake: FakeStripe) -> PaymentsSetup:
    return PaymentsSetup(
        stripe=StripeProvider(fake.api_key, api_base=fake.api_base, timeout_s=5),
        verify_stripe_webhook=functools.partial(verify_webhook, secret=WEBHOOK_SECRET),
    )


def signed(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


async def post(
    client: httpx.AsyncClient, path: str, key: str, body: Any, **headers: str
) -> httpx.Response:
    return await client.post(path, json=body, headers={**auth(key), **headers})


async def test_authorise_capture_refund_and_roles(
    clean_db: str, keys: dict[str, str], setup: PaymentsSetup, fake: FakeStripe
) -> None:
    async with api_client(clean_db, payments=setup) as client:
        for role in ("operator", "maintenance", "public"):
            denied = await post(client, f"{PAYMENT}/authorize", keys[role], AUTHORIZE)
            assert denied.status_code == 403, role
        assert_problem(await client.get(PAYMENT, headers=auth(keys["billing"])), 404)
        held = await post(client, f"{PAYMENT}/authorize", keys["billing"], AUTHORIZE)
        assert held.status_code == 200, held.text
        assert (held.json()["status"], held.json()["authorized_minor"]) == ("authorized", 3000)
        for _ in range(2):  # a retried capture is the same capture
            captured = await post(
                client, f"{PAYMENT}/capture", keys["billing"], {"amount_minor": 2150}
            )
            assert captured.json()["captured_minor"] == 2150
        assert len(fake.calls("POST", "/capture")) == 1
        seen = await client.get(PAYMENT, headers=auth(keys["operator"]))
        assert [e["kind"] for e in seen.json()["events"]] == ["authorized", "captured"]

        no_key = await post(
            client, f"{PAYMENT}/refund", keys["billing"], {"amount_minor": 100, "reason": "x"}
        )
        assert_problem(no_key, 422)
        refund = {"amount_minor": 650, "reason": "connector fault"}
        for _ in range(2):
            done = await post(
                client, f"{PAYMENT}/refund", keys["admin"], refund, **{"Idempotency-Key": "rf-1"}
            )
            assert done.json()["refunded_minor"] == 650
        too_much = await post(
            client,
            f"{PAYMENT}/refund",
            keys["billing"],
            {"amount_minor": 1501, "reason": "all of it"},
            **{"Idempotency-Key": "rf-2"},
        )
        assert "exceed the capture" in assert_problem(too_much, 409)["detail"]
        assert_problem(
            await post(client, f"{PAYMENT}/cancel", keys["billing"], {"reason": "late"}), 409
        )
        events = (await client.get(PAYMENT, headers=auth(keys["billing"]))).json()["events"]
        refunded = [e for e in events if e["kind"] == "refunded"]
        assert [(e["actor"], e["amount_minor"]) for e in refunded] == [("test-admin", 650)]


async def test_a_declined_card_fails_the_payment_and_bad_bodies_are_422(
    clean_db: str, keys: dict[str, str], setup: PaymentsSetup
) -> None:
    async with api_client(clean_db, payments=setup) as client:
        declined = await post(
            client,
            f"{PAYMENT}/authorize",
            keys["billing"],
            {**AUTHORIZE, "payment_method": "pm_card_chargeDeclined"},
        )
        assert declined.status_code == 200
        assert declined.json()["status"] == "failed"
        assert "declin" in declined.json()["last_error"]
        for body in (
            {**AUTHORIZE, "currency": "euro"},
            {**AUTHORIZE, "amount_minor": -5},
            {**AUTHORIZE, "provider": "cash"},
        ):
            assert_problem(await post(client, f"{PAYMENT}/authorize", keys["billing"], body), 422)
        assert_problem(
            await client.get("/v1/sessions/not-a-uuid/payment", headers=auth(keys["billing"])), 422
        )


async def test_stripe_webhook_is_verified_and_applied_once(
    clean_db: str, keys: dict[str, str], setup: PaymentsSetup, fake: FakeStripe
) -> None:
    async with api_client(clean_db, payments=setup) as client:
        held = await post(client, f"{PAYMENT}/authorize", keys["billing"], AUTHORIZE)
        intent_id = held.json()["reference"]
        fake.intents[intent_id]["status"] = "canceled"  # expired at Stripe
        body = json.dumps(
            {
                "id": "evt_expired_1",
                "object": "event",
                "type": "payment_intent.canceled",
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": {"id": intent_id, "object": "payment_intent"}},
            }
        ).encode()
        for _ in range(2):  # Stripe redelivers
            resp = await client.post(
                "/webhooks/stripe",
                content=body,
                headers={"Stripe-Signature": signed(body), "Content-Type": "application/json"},
            )
            assert resp.status_code == 204, resp.text
        payment = (await client.get(PAYMENT, headers=auth(keys["billing"]))).json()
        assert payment["status"] == "canceled"
        assert [e["kind"] for e in payment["events"]].count("webhook:payment_intent.canceled") == 1
        forged = await client.post(
            "/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signed(body, "whsec_wrong_secret_000000000")},
        )
        problem = assert_problem(forged, 400)
        assert WEBHOOK_SECRET not in json.dumps(problem)
        unsigned = await client.post("/webhooks/stripe", content=body)
        assert_problem(unsigned, 400)
