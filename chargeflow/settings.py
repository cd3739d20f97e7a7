"""Settings for every chargeflow process, from ``CHARGEFLOW_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.topics import Topics


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHARGEFLOW_", env_file=".env", extra="ignore")

    # Infrastructure: empty means "start an embedded one" (see chargeflow.stack).
    kafka_bootstrap: str | None = Field(None, description="host:port of a real Kafka")
    kafka_port: int = Field(0, description="port for the embedded broker; 0 = a free one")
    database_url: str | None = Field(None, description="postgresql:// URL of the database")
    database_name: str = "chargeflow"
    data_dir: Path = Path(".chargeflow")

    topic_prefix: str = ""
    topic_partitions: int = 4

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 9000
    gateway_delivery_timeout_ms: int = 5000
    gateway_max_frame_bytes: int = 65536
    # OCPP security profile 2: PEM certificate chain and key -> the gateway speaks wss://.
    gateway_tls_cert: Path | None = None
    gateway_tls_key: Path | None = None
    gateway_id: str | None = Field(None, description="replica id; default hostname-pid")
    gateway_offline_grace_s: float = 60.0
    gateway_replica_heartbeat_s: float = 5.0
    gateway_replica_grace_s: float = Field(
        20.0, description="a replica silent this long is dead: others publish its stations offline")
    gateway_heartbeat_interval_s: int = 300
    # Station authentication limits (ingest.gateway.security, docs/gateway-security.md).
    gateway_auth_failure_limit_station: int = 5
    gateway_auth_failure_limit_ip: int = 10
    gateway_auth_failure_window_s: float = 60.0
    gateway_auth_cooldown_s: float = 60.0
    gateway_auth_failure_delay_s: float = 1.0
    gateway_auth_cache_ttl_s: float = 900.0
    gateway_auth_cache_key: SecretStr | None = Field(
        None, description="secret HMAC key of verified station credentials (all replicas)")
    gateway_auth_max_concurrent_verifications: int = 4
    gateway_auth_max_pending_verifications: int = 64
    gateway_auth_max_concurrent_logins: int = 32

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # The local demo runs in real time (timestamps are wall-clock) with short
    # plug-in times so sessions close within minutes.
    simulated_stations: int = 20
    simulator_meter_interval_s: float = 5.0
    simulator_time_scale: float = 1.0
    simulator_mean_dwell_s: float = 240.0
    simulator_mean_arrival_gap_s: float = 60.0
    # Basic-auth password of the simulated stations (chargeflow run generates one per run).
    simulator_station_password: str | None = None
    # Stations take these OCPP versions in turn: a mixed fleet by default.
    simulator_ocpp_versions: str = "1.6,2.0.1"

    # Smart meters over MQTT (ingest.meters). Empty mqtt_url: `chargeflow run` starts
    # an embedded broker (chargeflow.mqtt). mqtt://[user:password@]host:port, mqtts:// = TLS.
    mqtt_url: str | None = Field(None, description="URL of a real MQTT broker")
    mqtt_port: int = Field(0, description="port for the embedded MQTT broker; 0 = a free one")
    mqtt_topic_pattern: str = "meters/+/reading"
    mqtt_client_id: str = "chargeflow-meters"
    mqtt_share_group: str | None = None
    meters_http_port: int = 9102  # the bridge's /healthz and /metrics
    simulated_meter_interval_s: float = 10.0

    log_level: str = "INFO"
    log_format: str = Field("console", pattern="^(console|json)$")

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)
