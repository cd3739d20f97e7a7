"""Application factory and a uvicorn entry point."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api.audit import AuditWrites
from api.command_changes import CommandChanges
from api.config import ApiConfig
from api.firmware_rollouts import rollout_worker
from api.metrics import ApiMetrics
from api.observe import ObserveRequests
from api.payments import PaymentsSetup
from api.problems import COMMON, NotReadyProblem, Problem, install_problem_handlers
from api.ratelimit import AuthFailureLimiter
from api.routers import (
    alerts,
    audit,
    availability,
    cdrs,
    commands,
    firmware_rollouts,
    health,
    id_tags,
    load,
    meters,
    payment_methods,
    payments,
    prices,
    reports,
    sessions,
    sites,
    smart_charging,
    station_commands,
    station_health,
    station_messages,
    stations,
    tariff_admin,
    tariffs,
)
from bus.producer import Producer, producer_config

log = logging.getLogger(__name__)

DESCRIPTION = """\
API over chargeflow's store: sessions, availability, load, status history and fault
alerts (which maintenance acknowledges and resolves, each audited), tariffs, payments,
CDRs, and remote commands to stations (202 with the command; its outcome at
`/v1/commands/{id}`, with `?wait=N` or as server-sent events; `Idempotency-Key` makes a
retry return the first command), a station's OCPP message history (its CALLs and the
commands sent to it) and, for admins, the audit log of every write.

Authenticate with an API key (`chargeflow` admin creates them; shown once) in the
`X-API-Key` header or as `Authorization: Bearer <key>`. Roles: admin, operator,
maintenance, billing, public. Timestamps are RFC 3339 with an explicit offset
(`Z` or `+01:00`; percent-encode `+` in a query string).

Every error is an RFC 9457 problem details object (`application/problem+json`:
`type`, `title`, `status`, `detail`, `instance`; `errors` lists rejected inputs).
Too many wrong keys from one address answer 429 with `Retry-After`.
"""


def create_app(config: ApiConfig, payments_setup: PaymentsSetup | None = None) -> FastAPI:
    metrics = ApiMetrics()
    limiter = AuthFailureLimiter(config.auth_failure_limit, config.auth_failure_window_s)
    app = FastAPI(
        title="chargeflow API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(config, limiter, payments_setup or PaymentsSetup()),
        responses=COMMON,
    )
    app.state.config = config
    app.state.pool = None
    app.state.payments = None
    app.state.producer = None
    app.state.command_changes = None
    app.state.stripe_webhook = (payments_setup or PaymentsSetup()).verify_stripe_webhook
    app.state.metrics = metrics
    app.state.auth_limiter = limiter
    metrics.watch_pool(lambda: app.state.pool)
    _include_routers(app)
    install_problem_handlers(app)
    # Inside ObserveRequests: an unhandled exception is audited as the 500 it becomes.
    app.add_middleware(AuditWrites, metrics=metrics, routes=lambda: app.routes)
    app.add_middleware(ObserveRequests, metrics=metrics, routes=lambda: app.routes)
    app.openapi = _openapi_with_problems(app)  # type: ignore[method-assign]
    return app


def _lifespan(
    config: ApiConfig, limiter: AuthFailureLimiter, payments_setup: PaymentsSetup
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The database pools for the app's lifetime (the async one for requests, a small
    synchronous one for the payment providers), the firmware rollout worker's task;
    the limiter closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            config.database_url,
            min_size=config.pool_min_size,
            max_size=config.pool_max_size,
            kwargs={"autocommit": True},
            open=False,
            name="chargeflow-api",
        )
        # Not waiting: the API starts even while the database is down (readyz says so).
        await pool.open(wait=False)
        app.state.pool = pool
        payments_pool: ConnectionPool[Any] = ConnectionPool(
            config.database_url,
            min_size=0,
            max_size=config.pool_max_size,
            timeout=config.pool_timeout_s,
            open=False,
            name="chargeflow-api-payments",
        )
        payments_pool.open(wait=False)
        app.state.payments = payments_setup.service(payments_pool)
        # Commands from the API go on ocpp.commands (none without a broker: they stay
        # pending and a gateway heartbeat publishes them).
        producer = _command_producer(config)
        app.state.producer = producer
        changes = CommandChanges(config.database_url)
        changes.start()
        app.state.command_changes = changes
        try:
            async with rollout_worker(app, config.firmware_rollout_tick_s):
                yield
        finally:
            await changes.aclose()
            app.state.pool = None
            app.state.payments = None
            app.state.producer = None
            if producer is not None:
                await producer.aclose(5.0)
            await asyncio.to_thread(payments_pool.close)
            await pool.close()
            await limiter.aclose()

    return lifespan


def _command_producer(config: ApiConfig) -> Producer | None:
    if not config.kafka_bootstrap:
        return None
    producer = Producer(producer_config(config.kafka_bootstrap))
    producer.start()
    return producer


def _include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(sessions.router)
    app.include_router(availability.router)
    app.include_router(load.router)
    app.include_router(alerts.router)
    app.include_router(station_health.router)
    app.include_router(tariffs.router)
    app.include_router(payments.router)
    app.include_router(payment_methods.router)
    app.include_router(prices.router)
    app.include_router(cdrs.router)
    app.include_router(tariff_admin.router)
    app.include_router(station_commands.router)
    app.include_router(commands.router)
    app.include_router(stations.router)
    app.include_router(sites.router)
    app.include_router(id_tags.router)
    app.include_router(meters.router)
    app.include_router(firmware_rollouts.router)
    app.include_router(station_messages.router)
    app.include_router(audit.router)
    app.include_router(smart_charging.router)
    app.include_router(reports.router)


def _openapi_with_problems(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, built once, with the problem schemas the error responses
    name (they are no route's response model, so FastAPI would leave them out)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (Problem, NotReadyProblem):
                document = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(document.pop("$defs", {}))
                schemas[model.__name__] = document
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def build_server(
    config: ApiConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    payments: PaymentsSetup | None = None,
) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            create_app(config, payments),
            host=host,
            port=port,
            log_level=log_level,
            # The app writes its own access log (route template, key id, no query string).
            proxy_headers=True,
            lifespan="on",
            access_log=False,
        )
    )


async def serve_async(
    config: ApiConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    payments: PaymentsSetup | None = None,
) -> None:
    """Serve until cancelled or SIGINT/SIGTERM (uvicorn handles both)."""
    await build_server(config, host, port, payments=payments).serve()


def serve(
    config: ApiConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    payments: PaymentsSetup | None = None,
) -> None:
    log.info("chargeflow API on http://%s:%d (docs at /docs)", host, port)
    asyncio.run(serve_async(config, host, port, payments))
