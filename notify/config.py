"""The webhooks worker's configuration (``chargeflow webhooks`` builds it from the
``CHARGEFLOW_WEBHOOKS_*`` settings, :mod:`notify.settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.topics import Topics
from notify.policy import Endpoint, RetryPolicy


@dataclass(frozen=True)
class WebhooksConfig:
    endpoints: tuple[Endpoint, ...] = ()
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = field(  # may hold a password: not in repr
        default="postgresql://postgres@127.0.0.1:5432/chargeflow", repr=False
    )
    topics: Topics = field(default_factory=Topics)
    # Tries per alert version and endpoint in all (the first included); then it is dead.
    max_attempts: int = 8
    # Wait after the first failed try, doubled after each further one (jittered).
    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0  # the longest wait between two tries
    # Seconds one request may take in all (connect, send, answer); longer = failed try.
    request_timeout_s: float = 10.0
    concurrency: int = 8  # requests in flight at once, over all endpoints
    # Seconds between looks for due deliveries when there was nothing to do.
    poll_s: float = 1.0
    # Kafka consumer group whose committed offsets say how far the alerts topic was read.
    consumer_group: str = "chargeflow-webhooks"
    http_host: str = "127.0.0.1"  # address of the /healthz and /metrics endpoint
    # Port of /healthz and /metrics over HTTP; None = off, 0 = a free port.
    http_port: int | None = None
    # Seconds a stop waits for requests in flight before abandoning them (retried later).
    drain_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook endpoint names must be unique: {names}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be > 0")
        self.retry  # noqa: B018 - validates max_attempts and the backoff

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts, base_s=self.backoff_base_s, max_s=self.backoff_max_s
        )

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is hidden from other workers: longer than one
        request, so only a worker that died mid-request lets it be claimed again."""
        return self.request_timeout_s * 2 + 5.0
