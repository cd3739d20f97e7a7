"""Gateway settings (the launcher builds these from ``CHARGEFLOW_*`` settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.topics import Topics


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port (see Gateway.port)
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/chargeflow"
    topics: Topics = field(default_factory=Topics)
    # A CALL is answered with CALLERROR InternalError when Kafka has not confirmed
    # its event within this time; keep it well inside the stations' call timeout.
    delivery_timeout_ms: int = 5000
    # Larger WebSocket frames close that station's connection with 1009.
    max_frame_bytes: int = 65536
    heartbeat_interval_s: int = 300
    db_pool_max_size: int = 10
    # DataTransfer vendor ids the platform takes (answered Accepted; the CALL is on
    # ocpp.events for whoever consumes that vendor's data). Others: UnknownVendorId.
    data_transfer_vendor_ids: frozenset[str] = frozenset()
