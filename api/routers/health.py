"""Liveness, readiness and metrics (no auth).

The API needs only the database: ``/readyz`` (and ``/healthz``, the same report) answer
503 only when the database does not answer within the health timeout. The broker's
state is reported for information and never makes the API unready. ``/livez`` says the
process serves requests, without touching any dependency.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import DbPool
from api.problems import (
    NOT_READY,
    PROBLEM_JSON,
    TYPE_NOT_READY,
    NotReadyProblem,
    request_path,
)
from api.schemas.health import HealthPublic, LivenessPublic
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
        async with asyncio.timeout(limit_s):
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


async def _readiness(request: Request, pool: DbPool) -> JSONResponse:
    config = request.app.state.config
    database, broker = await asyncio.gather(
        _check_database(pool, config.health_timeout_s),
        _check_broker(config.kafka_bootstrap, config.health_timeout_s),
    )
    if database == "ok":
        return JSONResponse(
            HealthPublic(status="ok", database=database, broker=broker).model_dump()
        )
    problem = NotReadyProblem(
        type=TYPE_NOT_READY,
        title="Service Unavailable",
        status=503,
        detail=f"database {database}",
        instance=request_path(request.scope),
        database=database,
        broker=broker,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=503,
        media_type=PROBLEM_JSON,
        headers={"Retry-After": "5"},
    )


READINESS: dict[str, Any] = {
    "response_model": HealthPublic,
    "responses": NOT_READY,
    "description": "200 when the database answers within the health timeout, else 503. "
    "`broker` is informational: the API does not need Kafka to serve.",
}


@router.get("/livez", response_model=LivenessPublic, summary="Liveness: the process serves")
async def livez() -> LivenessPublic:
    return LivenessPublic(status="ok")


@router.get("/readyz", summary="Readiness: the database answers", **READINESS)
async def readyz(request: Request, pool: DbPool) -> JSONResponse:
    return await _readiness(request, pool)


@router.get("/healthz", summary="Readiness (same report as /readyz)", **READINESS)
async def healthz(request: Request, pool: DbPool) -> JSONResponse:
    return await _readiness(request, pool)


@router.get(
    "/metrics",
    summary="Prometheus metrics (HTTP requests per route and status, database pool)",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
