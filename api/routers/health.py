"""Liveness/readiness: database and broker reachability (no auth)."""

from __future__ import annotations

import asyncio
import logging

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import DbPool
from api.models import HealthPublic
from bus.admin import admin_client

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


def broker_reachable_quietly(bootstrap: str, limit_s: float) -> bool:
    """Like ``bus.admin.broker_reachable`` but without librdkafka's per-retry stderr
    lines (dozens per check while the broker is down); the outcome is logged once."""
    admin = admin_client(bootstrap, log_level=0)
    try:
        admin.list_topics(timeout=limit_s)
    except KafkaException:
        return False
    return True


async def _check_database(pool: DbPool, limit_s: float) -> str:
    try:
        async with asyncio.timeout(limit_s + 1):
            async with pool.connection(timeout=limit_s) as conn:
                await conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "down"; report its kind
        log.warning("health: database check failed: %s", type(exc).__name__)
        return f"down: {type(exc).__name__}"
    return "ok"


async def _check_broker(bootstrap: str | None, limit_s: float) -> str:
    if bootstrap is None:
        return "disabled"
    reachable = await asyncio.to_thread(broker_reachable_quietly, bootstrap, limit_s)
    if not reachable:
        log.warning("health: broker %s unreachable", bootstrap)
        return "down: unreachable"
    return "ok"


@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "a dependency is down"}},
)
async def healthz(request: Request, pool: DbPool) -> JSONResponse:
    config = request.app.state.config
    database, broker = await asyncio.gather(
        _check_database(pool, config.health_timeout_s),
        _check_broker(config.kafka_bootstrap, config.health_timeout_s),
    )
    healthy = database == "ok" and broker in ("ok", "disabled")
    body = HealthPublic(status="ok" if healthy else "degraded", database=database, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
