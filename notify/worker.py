"""The webhooks process (``chargeflow webhooks``): the intake and the delivery loop in one
task group, with ``/healthz`` and ``/metrics``, until :meth:`WebhooksWorker.stop`.

A stop (SIGTERM/SIGINT in the CLI) ends the intake after its current batch (its
offsets are committed only after its rows are stored), stops claiming deliveries and
waits up to ``drain_timeout_s`` for the requests in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from bus.producer import Producer, producer_config
from notify.config import WebhooksConfig
from notify.delivery import Deliverer
from notify.intake import AlertIntake
from notify.metrics import WebhookMetrics
from runtime.health import HealthServer
from runtime.logs import with_kafka_logger
from store.db import answers, worker_pool

log = structlog.get_logger("chargeflow.webhooks")


class WebhooksWorker:
    def __init__(self, config: WebhooksConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = WebhookMetrics(self.registry)
        self._stop = asyncio.Event()
        self.health: HealthServer | None = None
        if config.http_port is not None:
            self.health = HealthServer(
                host=config.http_host,
                port=config.http_port,
                registry=self.registry,
                name="webhooks",
            )

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        cfg = self.config
        pool: AsyncConnectionPool[Any] = worker_pool(cfg.database_url, "webhooks")
        producer = Producer(with_kafka_logger(producer_config(cfg.kafka_bootstrap)))
        limits = httpx.Limits(max_connections=cfg.concurrency)
        async with (
            pool,
            httpx.AsyncClient(
                timeout=cfg.request_timeout_s, limits=limits, follow_redirects=False
            ) as client,
        ):
            deliverer = Deliverer(cfg, pool, producer, client, self.metrics)
            intake = AlertIntake(cfg, pool, producer, self.metrics, on_queued=deliverer.nudge)
            if self.health is not None:
                self.health.add_check("database", lambda: answers(pool))
                port = self.health.bind()
                log.info("health and metrics", url=f"http://{cfg.http_host}:{port}")
            log.info(
                "webhooks worker started",
                endpoints=[e.name for e in cfg.endpoints],
                topic=cfg.topics.alerts,
                max_attempts=cfg.max_attempts,
            )
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(intake.run(self._stop), name="webhooks-intake")
                    group.create_task(deliverer.run(self._stop), name="webhooks-delivery")
                    if self.health is not None:
                        group.create_task(self.health.serve(), name="webhooks-health")
                        group.create_task(self._stop_health(), name="webhooks-health-stop")
            finally:
                await producer.aclose()
        log.info("webhooks worker stopped")

    async def _stop_health(self) -> None:
        await self._stop.wait()
        assert self.health is not None
        self.health.stop()
