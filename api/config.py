"""Settings the API process needs (the launcher builds this from CHARGEFLOW_* settings)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ApiConfig:
    database_url: str = field(repr=False)  # may hold a password
    # None: no broker configured; /healthz then reports the broker as "disabled".
    kafka_bootstrap: str | None = None
    pool_min_size: int = 1  # PostgreSQL connections kept open
    pool_max_size: int = 10  # PostgreSQL connections at most
    # Seconds to wait for a pooled connection before answering 503.
    pool_timeout_s: float = 5.0
    health_timeout_s: float = 2.0  # seconds /healthz waits for each dependency
