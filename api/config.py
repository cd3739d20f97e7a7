"""Settings the API process needs (the launcher builds this from CHARGEFLOW_* settings)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ApiConfig:
    database_url: str = field(repr=False)  # may hold a password
    # None: no broker configured; health then reports the broker as "disabled".
    kafka_bootstrap: str | None = None
    pool_min_size: int = 1  # PostgreSQL connections kept open
    pool_max_size: int = 10  # PostgreSQL connections at most
    # Seconds to wait for a pooled connection before answering 503.
    pool_timeout_s: float = 5.0
    # Readiness: the database must answer within this (the broker check gets as long).
    health_timeout_s: float = 2.0
    # Wrong API keys one client address may present per window before it gets 429.
    auth_failure_limit: int = 20
    auth_failure_window_s: int = 60

    def __post_init__(self) -> None:
        if self.auth_failure_limit < 1 or self.auth_failure_window_s < 1:
            raise ValueError("auth_failure_limit and auth_failure_window_s must be >= 1")
