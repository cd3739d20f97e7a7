"""Application factory and a uvicorn entry point."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.config import ApiConfig
from api.routers import availability, health, load, sessions

log = logging.getLogger(__name__)

DESCRIPTION = """\
Read API over chargeflow's store.

Authenticate with an API key (`chargeflow` admin creates them; shown once) in the
`X-API-Key` header or as `Authorization: Bearer <key>`. Roles: admin, operator,
maintenance, billing, public. Timestamps are ISO 8601; query timestamps without
an offset are taken as UTC (percent-encode `+` or use `Z`).
"""


def create_app(config: ApiConfig) -> FastAPI:
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
        # Not waiting: the API starts even while the database is down (healthz says so).
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="chargeflow API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.config = config
    app.include_router(health.router)
    app.include_router(sessions.router)
    app.include_router(availability.router)
    app.include_router(load.router)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable for %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    return app


def build_server(
    config: ApiConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            create_app(config), host=host, port=port, log_level=log_level,
            proxy_headers=True, lifespan="on",
        )
    )


async def serve_async(config: ApiConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until cancelled or SIGINT/SIGTERM (uvicorn handles both)."""
    await build_server(config, host, port).serve()


def serve(config: ApiConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    log.info("chargeflow API on http://%s:%d (docs at /docs)", host, port)
    asyncio.run(serve_async(config, host, port))
