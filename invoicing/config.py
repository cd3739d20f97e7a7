"""The billing worker's configuration (``chargeflow billing`` builds it from the
``CHARGEFLOW_BILLING_*`` settings, :mod:`invoicing.settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.topics import Topics


@dataclass(frozen=True)
class InvoicingConfig:
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = field(  # may hold a password: not in repr
        default="postgresql://postgres@127.0.0.1:5432/chargeflow", repr=False
    )
    topics: Topics = field(default_factory=Topics)
    # Kafka consumer group whose committed offsets say how far sessions.closed was read.
    consumer_group: str = "chargeflow-billing"
    # The CPO issuing the CDRs (OCPI country code and party id).
    country_code: str = "NL"
    party_id: str = "CFL"
    # Failed captures: tried again after this (doubling up to capture_retry_max_s), at
    # most capture_max_attempts times, then flagged for billing; looked for every
    # capture_retry_every_s.
    capture_retry_initial_s: float = 30.0
    capture_retry_max_s: float = 3600.0
    capture_max_attempts: int = 8
    capture_retry_every_s: float = 10.0
    # Billing clerks' decisions on held sessions (release, correct, write off) are looked
    # for and carried out this often (invoicing.reviews).
    review_poll_s: float = 2.0
    # A decision that could not be carried out (no tariff applies yet, the session cannot
    # be priced, the provider refuses) is tried again after this many seconds.
    review_retry_s: float = 300.0
    # Seconds between looks for active sessions to pre-authorise (an id tag with a
    # payment method, no payment yet).
    preauth_poll_s: float = 2.0
    # What a session's pre-authorisation holds, in minor units of its tariff's currency
    # (less when the tariff's max_price incl. VAT is lower).
    preauth_estimate_minor: int = 5000
    http_host: str = "127.0.0.1"  # address of the /livez, /readyz and /metrics endpoint
    # Port of /livez, /readyz and /metrics over HTTP; None = off, 0 = a free port.
    http_port: int | None = None

    def __post_init__(self) -> None:
        if len(self.country_code) != 2 or not self.country_code.isalpha():
            raise ValueError("the CDRs' country_code is 2 letters (ISO 3166-1 alpha-2)")
        if len(self.party_id) != 3 or not self.party_id.isalnum():
            raise ValueError("the CDRs' party_id is 3 letters or digits")
        if not 0 < self.capture_retry_initial_s <= self.capture_retry_max_s:
            raise ValueError("capture retries need 0 < initial <= max seconds")
        if self.capture_max_attempts < 1 or self.capture_retry_every_s <= 0:
            raise ValueError("capture_max_attempts >= 1 and capture_retry_every_s > 0")
        if self.review_poll_s <= 0 or self.review_retry_s <= 0:
            raise ValueError("review_poll_s and review_retry_s must be > 0")
        if self.preauth_poll_s <= 0 or self.preauth_estimate_minor < 1:
            raise ValueError("preauth_poll_s > 0 and preauth_estimate_minor >= 1")
