"""Composition of the gateway: builds the collaborators the WebSocket transport
(``server.Gateway``) serves stations with, and opens and closes them in order.

``open`` (before the port listens): the database pool, the Kafka producer, readiness,
``GatewayServices`` (its coalesced ``last_seen`` writer running), the station
``Authenticator`` and ``Liveness``. ``start_commands`` (once the port listens: the
router needs the transport's connections): the ``CommandRouter`` and the sweep of
stations left online by dead replicas. ``close`` stops them in the reverse order and
copes with a partly opened gateway (a failed start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from psycopg_pool import AsyncConnectionPool

from bus.producer import Producer, producer_config
from ingest.gateway import v16, v201
from ingest.gateway.commands import CommandRouter
from ingest.gateway.config import GatewayConfig
from ingest.gateway.health import Readiness
from ingest.gateway.limits import FailureLimiter
from ingest.gateway.liveness import Liveness
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.security import Authenticator
from ingest.gateway.services import GatewayMetrics, GatewayServices

log = structlog.get_logger("chargeflow.gateway")


def open_pool(cfg: GatewayConfig) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        cfg.database_url,
        min_size=1,
        max_size=cfg.db_pool_max_size,
        open=False,
        kwargs={"autocommit": True},
        name="gateway",
    )


def event_producer(cfg: GatewayConfig) -> Producer:
    return Producer(
        producer_config(
            cfg.kafka_bootstrap,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            extra={"linger.ms": cfg.producer_linger_ms},
        ),
        guard_s=cfg.delivery_timeout_ms / 1000 + 2.0,
    )


def gateway_services(
    cfg: GatewayConfig, pool: AsyncConnectionPool, producer: Producer, metrics: GatewayMetrics
) -> GatewayServices:
    return GatewayServices(
        pool=pool,
        producer=producer,
        topics=cfg.topics,
        metrics=metrics,
        heartbeat_interval_s=cfg.heartbeat_interval_s,
        delivery_timeout_ms=cfg.delivery_timeout_ms,
        data_transfer_vendor_ids=frozenset(cfg.data_transfer_vendor_ids),
        gateway_id=cfg.gateway_id,
        id_tag_cache_ttl_s=cfg.id_tag_cache_ttl_s,
        allow_concurrent_transactions=cfg.allow_concurrent_transactions,
        open_transaction_max_age_s=cfg.open_transaction_max_age_s,
        remote_start_window_s=cfg.remote_start_window_s,
        validate_responses=cfg.validate_responses,
        last_seen_interval_s=cfg.last_seen_interval_s,
    )


def failure_limiter(cfg: GatewayConfig, limit: int) -> FailureLimiter:
    return FailureLimiter(limit, cfg.auth_failure_window_s, cfg.auth_cooldown_s)


def authenticator(
    cfg: GatewayConfig,
    pool: AsyncConnectionPool,
    services: GatewayServices,
    metrics: GatewayMetrics,
) -> Authenticator:
    return Authenticator(
        pool=pool,
        gateway_id=cfg.gateway_id,
        tls=bool(cfg.tls_cert),
        station_writes=services.station_writes,
        station_limiter=failure_limiter(cfg, cfg.auth_failure_limit_station),
        ip_limiter=failure_limiter(cfg, cfg.auth_failure_limit_ip),
        cache_ttl_s=cfg.auth_cache_ttl_s,
        max_concurrent_verifications=cfg.max_concurrent_verifications,
        max_pending_verifications=cfg.max_pending_verifications,
        alert=services.publish_alert,
        metrics=metrics,
        cache_key=cfg.auth_cache_key,
        failure_delay_s=cfg.auth_failure_delay_s,
        max_concurrent_logins=cfg.max_concurrent_logins,
        max_login_wait_s=cfg.open_timeout_s / 6,
    )


class GatewayApp:
    """The gateway's collaborators; ``None`` until opened (or after closing)."""

    def __init__(self, config: GatewayConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        # Process metrics (CPU, memory, fds, GC, Python version) next to the gateway's.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.pool: AsyncConnectionPool | None = None
        self.producer: Producer | None = None
        self.readiness: Readiness | None = None
        self.services: GatewayServices | None = None
        self.authenticator: Authenticator | None = None
        self.liveness: Liveness | None = None
        self.commands: CommandRouter | None = None

    async def open(self) -> None:
        cfg = self.config
        await asyncio.to_thread(v16.SCHEMAS.warm)
        await asyncio.to_thread(v201.SCHEMAS.warm)
        self.pool = open_pool(cfg)
        await self.pool.open(wait=True, timeout=30)
        self.producer = event_producer(cfg)
        self.producer.start()
        self.readiness = Readiness(self.pool, self.producer, cfg.topics.ocpp_events)
        self.services = gateway_services(cfg, self.pool, self.producer, self.metrics)
        self.services.last_seen.start()
        self.services.station_writes.start()
        self.authenticator = authenticator(cfg, self.pool, self.services, self.metrics)
        if not self.authenticator.persistent_cache:
            log.info(
                "no auth cache key set (CHARGEFLOW_GATEWAY_AUTH_CACHE_KEY): after a "
                "restart every station's password is verified with argon2 again"
            )
        self.liveness = Liveness(self.services, cfg.gateway_id, cfg.offline_grace_s)
        # Before any station connects here: whatever rows name this id are a dead
        # process's (a restart under the same replica id).
        await self.liveness.release_previous_life()

    async def start_commands(
        self,
        lookup: Callable[[str], CentralSystemBase | None],
        held_stations: Callable[[], dict[str, str | None]],
    ) -> None:
        """The command router (sends through ``lookup``'s connections) and the sweep of
        stations nobody live holds (``held_stations``: this replica's)."""
        cfg = self.config
        assert self.pool is not None
        assert self.producer is not None
        assert self.liveness is not None
        self.commands = CommandRouter(
            gateway_id=cfg.gateway_id,
            bootstrap=cfg.kafka_bootstrap,
            topics=cfg.topics,
            pool=self.pool,
            producer=self.producer,
            lookup=lookup,
            registry=self.registry,
            heartbeat_s=cfg.replica_heartbeat_s,
            grace_s=cfg.replica_grace_s,
        )
        await self.commands.start()
        self.liveness.start_sweeping(cfg.replica_heartbeat_s, cfg.replica_grace_s, held_stations)

    async def stop_commands(self) -> None:
        """First on shutdown: commands in flight still get recorded."""
        if self.commands is not None:
            await self.commands.stop()
            self.commands = None

    async def close(self) -> None:
        """After the transport closed: liveness, alerts, batched station writes, producer,
        pool."""
        if self.liveness is not None:
            await self.liveness.close()
            self.liveness = None
        if self.authenticator is not None:
            await self.authenticator.drain()
            self.authenticator = None
        if self.services is not None:
            await self.services.last_seen.close()
            await self.services.station_writes.close()
        if self.producer is not None:
            await self.producer.aclose(10.0)
            self.producer = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
