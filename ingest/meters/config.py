"""Bridge settings (the CLI builds these from ``CHARGEFLOW_*`` settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from bus.topics import Topics
from ingest.meters.reading import validate_pattern

DEFAULT_TOPIC_PATTERN = "meters/+/reading"


@dataclass(frozen=True)
class MqttEndpoint:
    """Where the MQTT broker is: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` = TLS)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"not an MQTT URL (mqtt:// or mqtts://): {url.split('@')[-1]!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        if not parts.hostname:
            raise ValueError("MQTT URL has no host")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    @property
    def url(self) -> str:
        """The URL without credentials (safe to log)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class BridgeConfig:
    mqtt: MqttEndpoint = field(default_factory=MqttEndpoint)
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = field(  # may hold a password: not in repr
        default="postgresql://postgres@127.0.0.1:5432/chargeflow", repr=False
    )
    topics: Topics = field(default_factory=Topics)
    # MQTT subscription filter; the level matched by its first '+' is the meter id.
    topic_pattern: str = DEFAULT_TOPIC_PATTERN
    # Stable id + persistent session (clean_session False): readings published
    # while the bridge is down, or not yet acknowledged, are delivered again.
    client_id: str = "chargeflow-meters"
    clean_session: bool = False  # true: forget the session (and its queued readings)
    # Several bridge replicas share the readings: subscribe to $share/<group>/<pattern>.
    share_group: str | None = None
    keepalive_s: int = 30  # MQTT keepalive interval, seconds
    # MQTT messages between receipt and acknowledgement (acks go out in order).
    max_in_flight: int = 100
    max_payload_bytes: int = 65536  # larger readings go to the dead letters
    # Milliseconds Kafka has to confirm a reading (librdkafka delivery.timeout.ms).
    delivery_timeout_ms: int = 5000
    # Registry cache: known meters for registry_ttl_s, unknown ids for unknown_meter_ttl_s.
    registry_ttl_s: float = 30.0
    unknown_meter_ttl_s: float = 5.0  # see registry_ttl_s
    registry_cache_size: int = 50_000  # meters the registry cache holds at most
    # Reconnects to the MQTT broker wait reconnect_initial_s, doubled each time up to
    # reconnect_max_s (jittered).
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 10.0  # see reconnect_initial_s
    # Seconds a clean stop waits for readings already handed to Kafka.
    drain_timeout_s: float = 10.0
    http_host: str = "127.0.0.1"  # address of the /healthz and /metrics endpoint
    # Port of /healthz and /metrics over HTTP; None = off, 0 = a free port.
    http_port: int | None = None

    def __post_init__(self) -> None:
        validate_pattern(self.topic_pattern)
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    @property
    def subscription(self) -> str:
        if self.share_group:
            return f"$share/{self.share_group}/{self.topic_pattern}"
        return self.topic_pattern
