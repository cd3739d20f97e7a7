"""Settings of the Stripe payment provider: ``CHARGEFLOW_STRIPE_*`` (see
:mod:`runtime.settings`). The key and the webhook signing secret are ``SecretStr``:
never printed by ``repr``, logs, settings errors or docs/configuration.md.

Whichever process charges through Stripe reads them with ``StripeSettings.load()`` and
makes the provider with :meth:`StripeSettings.provider`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from billing.payments.stripe import DEFAULT_API_BASE, StripeProvider, WebhookEvent, verify_webhook
from runtime.settings import ChargeflowSettings, SettingsError, secret


class StripeSettings(ChargeflowSettings):
    stripe_api_key: SecretStr | None = Field(
        None, description="Stripe secret or restricted key (sk_... / rk_...); unset: no Stripe"
    )
    stripe_api_base: str = Field(
        DEFAULT_API_BASE,
        pattern=r"^https?://[^\s/@]+(:\d+)?/?$",
        description="base URL of the Stripe API (another only for a local server speaking it)",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="signing secret (whsec_...) of the Stripe webhook endpoint"
    )
    stripe_webhook_tolerance_s: int = Field(
        300,
        ge=1,
        description="seconds a webhook's signature timestamp may be away from our clock",
    )
    stripe_max_network_retries: int = Field(
        2,
        ge=0,
        le=5,
        description="retries the Stripe SDK makes itself (dropped connection, 409, 429, 5xx), "
        "with the same idempotency key",
    )
    stripe_timeout_s: float = Field(30.0, gt=0, description="timeout of one Stripe request")

    def provider(self) -> StripeProvider:
        """The provider, or :class:`SettingsError` when no API key is set."""
        return StripeProvider(
            self.require("stripe_api_key"),
            api_base=self.stripe_api_base,
            max_network_retries=self.stripe_max_network_retries,
            timeout_s=self.stripe_timeout_s,
        )

    def verify_webhook(
        self, payload: bytes, signature_header: str | None, now: float | None = None
    ) -> WebhookEvent:
        """:func:`~billing.payments.stripe.verify_webhook` with the configured secret."""
        webhook_secret = secret(self.stripe_webhook_secret)
        if not webhook_secret:
            raise SettingsError("CHARGEFLOW_STRIPE_WEBHOOK_SECRET is required")
        return verify_webhook(
            payload,
            signature_header,
            webhook_secret,
            tolerance_s=self.stripe_webhook_tolerance_s,
            now=now,
        )
