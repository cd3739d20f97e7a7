"""Gateway settings (the launcher builds these from ``CHARGEFLOW_*`` settings)."""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass, field

from bus.topics import Topics

_instances = itertools.count()


def default_gateway_id() -> str:
    """``hostname-pid``; further gateways in the same process get ``-2``, ``-3``..."""
    n = next(_instances)
    base = f"{socket.gethostname()}-{os.getpid()}"
    return base if n == 0 else f"{base}-{n + 1}"


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port (see Gateway.port)
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = field(  # may hold a password: not in repr
        default="postgresql://postgres@127.0.0.1:5432/chargeflow", repr=False
    )
    topics: Topics = field(default_factory=Topics)
    # A CALL is answered with CALLERROR InternalError when Kafka has not confirmed
    # its event within this time; keep it well inside the stations' call timeout.
    delivery_timeout_ms: int = 5000
    # Larger WebSocket frames close that station's connection with 1009.
    max_frame_bytes: int = 65536
    heartbeat_interval_s: int = 300  # seconds, told to stations in the BootNotification answer
    db_pool_max_size: int = 10  # PostgreSQL connections of the gateway's pool
    # Check every CALLRESULT the gateway builds against the response schema (a
    # handler bug -> CALLERROR InternalError). Costs as much as the request check;
    # tests turn it on, production leaves it off.
    validate_responses: bool = False
    # Kafka producer batching delay (librdkafka linger.ms): a few ms more per CALL,
    # fewer and larger produce requests under load.
    producer_linger_ms: int = 5
    # Garbage collection tuning for the process (server.tune_gc): young-generation
    # threshold; 0 leaves Python's defaults alone.
    gc_young_threshold: int = 50_000
    # stations.last_seen_at is written for all stations at most this often.
    last_seen_interval_s: float = 1.0
    # DataTransfer vendor ids the platform takes (answered Accepted; the CALL is on
    # ocpp.events for whoever consumes that vendor's data). Others: UnknownVendorId.
    data_transfer_vendor_ids: frozenset[str] = frozenset()

    # --- identity and liveness (station_connections, station.connection envelopes)
    gateway_id: str = field(default_factory=default_gateway_id)  # replica id; hostname-pid
    # A dropped station is published offline only if it has not reconnected (to any
    # replica) within this many seconds.
    offline_grace_s: float = 60.0
    # Replicas heartbeat into ``gateways`` this often; one silent for replica_grace_s
    # is taken as dead: its pending commands fail and another replica publishes its
    # stations offline (Liveness.sweep_orphans).
    replica_heartbeat_s: float = 5.0
    replica_grace_s: float = 20.0  # see replica_heartbeat_s
    # A station that sends nothing for heartbeat_interval_s x this factor is
    # disconnected (then offline after the grace period); 0 disables the check.
    silence_timeout_factor: float = 3.0

    # --- security profile 2: TLS (both paths, PEM) -> wss://
    tls_cert: str | None = None  # PEM certificate chain; with tls_key the gateway speaks wss://
    tls_key: str | None = None  # PEM private key of tls_cert

    # --- authentication (see ingest.gateway.security, docs/gateway-security.md)
    # Failures per station id in the window -> a security alert, and further wrong
    # passwords for that id answered auth_failure_delay_s later; never a block. 0 = off.
    auth_failure_limit_station: int = 5
    # Failures per source address (IPv6: /64) in the window -> that source cools down
    # for auth_cooldown_s (429, no argon2), except for logins from a station's known
    # address and passwords matching a verified credential. 0 = off.
    auth_failure_limit_ip: int = 10
    auth_failure_window_s: float = 60.0
    auth_cooldown_s: float = 60.0
    auth_failure_delay_s: float = 1.0
    # A verified credential (HMAC in station_verified_credentials) is accepted without
    # argon2 while the station verified or was last seen within this many seconds;
    # longer than heartbeat_interval_s, so it covers a gateway restart. 0 = always argon2.
    auth_cache_ttl_s: float = 900.0
    # The secret HMAC key of verified credentials (the same on every replica); unset =
    # a random key per process, so the records do not survive a restart.
    auth_cache_key: str | None = field(default=None, repr=False)
    max_concurrent_verifications: int = 4  # argon2 worker threads at once
    # Logins being authenticated at once (any method); more wait in turn while the
    # expected wait is within open_timeout_s / 6, else 503 + Retry-After. 0 = no limit.
    max_concurrent_logins: int = 32
    # Logins waiting for an argon2 slot beyond this are refused at once with 503 and
    # Retry-After (a reconnect storm), instead of timing out; 0 = never refuse.
    max_pending_verifications: int = 64
    # TCP accept queue (the kernel caps it at net.core.somaxconn). asyncio's default of
    # 100 drops the SYNs of a reconnect storm, and each dropped station waits for its
    # TCP retransmission (1 s, 3 s, 7 s, ...) before the gateway even sees it.
    listen_backlog: int = 4096
    # Time a client has to complete the opening handshake (TCP accept -> 101),
    # authentication included; websockets' default is 10 s.
    open_timeout_s: float = 30.0

    # --- WebSocket keepalive (ingest.gateway.keepalive): a station that sent nothing
    # for ping_interval_s is pinged; its connection is closed (1011) when the pong
    # has not come after ping_timeout_s of the gateway waiting for it. Time the
    # gateway spends behind on the station's frames (overload, backpressure) never
    # counts. 0 disables pings / the timeout.
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # permessage-deflate (RFC 7692) when a station offers it. Off: OCPP frames are a
    # few hundred bytes and compress little, while zlib per frame costs the gateway
    # CPU on every CALL (about 4 % of its samples at 2,000 CALLs/s); declining is
    # part of the standard negotiation, so stations simply send uncompressed.
    permessage_deflate: bool = False

    # --- idTag authorisation
    id_tag_cache_ttl_s: float = 30.0  # an idTag's authorisation is re-read after this long
    # Accept a StartTransaction for an idTag that has one open already.
    allow_concurrent_transactions: bool = False
    # An open transaction older than this no longer blocks a new one for its idTag.
    open_transaction_max_age_s: float = 48 * 3600.0
    # A 1.6 StartTransaction (its own timestamp) up to this long after a remote start
    # was answered is linked to it (same connector, same idTag; ADR 0010). About the
    # stations' ConnectionTimeOut: how long they wait for the driver to plug in.
    remote_start_window_s: float = 180.0

    # --- abuse limits per connection: frames read per second (token bucket; excess
    # frames are read later = TCP backpressure, never dropped or errored) and frames
    # buffered unread (CALLs are handled one at a time per connection).
    max_messages_per_s: float = 20.0
    message_burst: int = 200
    max_queued_frames: int = 16
