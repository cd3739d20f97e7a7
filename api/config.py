"""Settings the API process needs (the launcher builds this from CHARGEFLOW_* settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.topics import Topics


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
    # Seconds a price quote shown to a driver holds (the session must start within it).
    quote_valid_s: int = 300
    # Demand pricing: above this share of the site's grid capacity or connectors in use,
    # the energy price rises linearly up to (1 + demand_max_uplift) x the tariff's at
    # full demand (0: no demand pricing).
    demand_threshold: float = 0.8
    demand_max_uplift: float = 0.2
    # Remote commands: seconds a command may wait to be sent (then expired, never sent).
    command_ttl_s: float = 120.0
    # Remote commands: seconds the gateway waits for the station's answer (then timed_out).
    command_timeout_s: float = 30.0
    # Firmware rollouts: seconds between two rounds of this replica's rollout worker
    # (0: this replica drives no rollout).
    firmware_rollout_tick_s: float = 5.0
    # Topic names (the prefix is the shared CHARGEFLOW_TOPIC_PREFIX).
    topics: Topics = field(default_factory=Topics)

    def __post_init__(self) -> None:
        if self.auth_failure_limit < 1 or self.auth_failure_window_s < 1:
            raise ValueError("auth_failure_limit and auth_failure_window_s must be >= 1")
        if not 30 <= self.quote_valid_s <= 3600:
            raise ValueError("quote_valid_s must be between 30 and 3600 seconds")
        if not 0 <= self.demand_threshold < 1 or not 0 <= self.demand_max_uplift <= 5:
            raise ValueError("demand_threshold is a share in [0, 1), demand_max_uplift in [0, 5]")
        if not 1 <= self.command_ttl_s <= 86400 or not 1 <= self.command_timeout_s <= 300:
            raise ValueError("command_ttl_s must be in [1, 86400], command_timeout_s in [1, 300]")
        if not 0 <= self.firmware_rollout_tick_s <= 3600:
            raise ValueError("firmware_rollout_tick_s must be in [0, 3600]")
