"""What the API needs to take payments: the payment service (built at startup on a
synchronous pool of its own, as the providers are synchronous) and, when Stripe is
configured, its provider and webhook verifier."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from billing.payments.postpaid import PostpaidProvider
from billing.payments.provider import PaymentProvider
from billing.payments.service import PaymentService
from billing.payments.stripe import StripeProvider, WebhookEvent
from billing.payments.wallet import WalletProvider

WebhookVerifier = Callable[[bytes, str | None], WebhookEvent]


@dataclass(frozen=True)
class PaymentsSetup:
    """Stripe when configured (``CHARGEFLOW_STRIPE_*``); the wallet and postpaid accounts
    always (they live in the database)."""

    stripe: StripeProvider | None = None
    verify_stripe_webhook: WebhookVerifier | None = None
    max_attempts: int = 8

    def service(self, pool: ConnectionPool[Any]) -> PaymentService:
        providers: dict[str, PaymentProvider] = {
            "wallet": WalletProvider(pool),
            "postpaid": PostpaidProvider(pool),
        }
        if self.stripe is not None:
            providers["stripe"] = self.stripe
        return PaymentService(pool, providers, max_attempts=self.max_attempts)


def from_settings() -> PaymentsSetup:
    """Stripe from ``CHARGEFLOW_STRIPE_*`` if a key is set."""
    from billing.payments.settings import StripeSettings

    settings = StripeSettings.load()
    if settings.stripe_api_key is None:
        return PaymentsSetup()
    return PaymentsSetup(stripe=settings.provider(), verify_stripe_webhook=settings.verify_webhook)
