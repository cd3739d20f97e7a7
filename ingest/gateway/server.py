"""WebSocket transport of the gateway: ``ws://host:port/ocpp/{charge_point_id}``.

The upgrade is refused with HTTP 404 for other paths and HTTP 400 when the
client offers no supported OCPP subprotocol. ``/health`` and ``/metrics`` are
served as plain HTTP on the same port. Each connection is handled by the
version-specific protocol class chosen by the negotiated subprotocol; frames
larger than ``max_frame_bytes`` close that connection with 1009.

Subprotocols: ``ocpp2.0.1`` and ``ocpp1.6``. A station that offers both gets
``ocpp2.0.1``: the server picks in its own order (``PROTOCOLS``), and the newer
version is the richer one (EVSE model, string transaction ids, security events).
A station is recorded with the version it booted with (BootNotification).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bus.producer import Producer, producer_config
from ingest.gateway import v16, v201
from ingest.gateway.config import GatewayConfig
from ingest.gateway.services import GatewayMetrics, GatewayServices

log = structlog.get_logger("chargeflow.gateway")

# Subprotocol -> protocol class, in order of preference (the first offered one wins).
PROTOCOLS: dict[str, Any] = {
    v201.SUBPROTOCOL: v201.CentralSystemV201,
    v16.SUBPROTOCOL: v16.CentralSystemV16,
}
PATH_PREFIX = "/ocpp/"


def charge_point_id_from_path(path: str) -> str | None:
    """``/ocpp/CP-1`` -> ``CP-1``; ``None`` for anything else."""
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    cp_id = unquote(path[len(PATH_PREFIX):])
    if not 1 <= len(cp_id) <= 64 or "/" in cp_id or not cp_id.isprintable():
        return None
    if cp_id.strip() != cp_id:
        return None
    return cp_id


def offered_subprotocols(request: Request) -> list[str]:
    offered: list[str] = []
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(p.strip() for p in header.split(",") if p.strip())
    return offered


class Gateway:
    """``async with Gateway(config) as gw:`` serves until the block ends."""

    def __init__(self, config: GatewayConfig, *, registry: CollectorRegistry | None = None
                 ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self._server: Server | None = None
        self._pool: AsyncConnectionPool | None = None
        self._producer: Producer | None = None
        self._services: GatewayServices | None = None
        self._connections: dict[str, ServerConnection] = {}
        self.port: int = config.port

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/ocpp"

    async def start(self) -> None:
        cfg = self.config
        await asyncio.to_thread(v16.SCHEMAS.warm)
        await asyncio.to_thread(v201.SCHEMAS.warm)
        self._pool = AsyncConnectionPool(
            cfg.database_url, min_size=1, max_size=cfg.db_pool_max_size, open=False,
            kwargs={"autocommit": True}, name="gateway",
        )
        await self._pool.open(wait=True, timeout=30)
        self._producer = Producer(
            producer_config(cfg.kafka_bootstrap, delivery_timeout_ms=cfg.delivery_timeout_ms)
        )
        self._services = GatewayServices(
            pool=self._pool, producer=self._producer, topics=cfg.topics, metrics=self.metrics,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            data_transfer_vendor_ids=frozenset(cfg.data_transfer_vendor_ids),
        )
        self._server = await serve(
            self._handle_connection, cfg.host, cfg.port,
            subprotocols=list(PROTOCOLS),  # type: ignore[arg-type]
            process_request=self._process_request,
            max_size=cfg.max_frame_bytes,
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        log.info("gateway listening", url=self.url, protocols=list(PROTOCOLS))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close, 10.0)
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        log.info("gateway stopped")

    async def __aenter__(self) -> Gateway:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None, "use 'async with Gateway(...)' first"
        await self._server.serve_forever()

    @property
    def connected_stations(self) -> list[str]:
        return sorted(self._connections)

    # --------------------------------------------------------------- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/health", "/healthz"):
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            response = connection.respond(HTTPStatus.OK, generate_latest(self.registry).decode())
            return response
        if charge_point_id_from_path(path) is None:
            self.metrics.rejected_handshakes.labels("path").inc()
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "Not found: charge points connect to /ocpp/{charge_point_id}\n",
            )
        if not any(p in PROTOCOLS for p in offered_subprotocols(request)):
            self.metrics.rejected_handshakes.labels("subprotocol").inc()
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                "No supported OCPP subprotocol offered in Sec-WebSocket-Protocol; "
                f"supported: {', '.join(PROTOCOLS)}\n",
            )
        return None

    # -------------------------------------------------------------- connection

    async def _handle_connection(self, ws: ServerConnection) -> None:
        assert self._services is not None
        assert ws.request is not None
        cp_id = charge_point_id_from_path(ws.request.path)
        protocol_cls = PROTOCOLS.get(ws.subprotocol or "")
        if cp_id is None or protocol_cls is None:  # process_request rules these out
            await ws.close(1002, "bad path or subprotocol")
            return
        previous = self._connections.get(cp_id)
        self._connections[cp_id] = ws
        if previous is not None:
            log.info("station reconnected, closing its previous connection", charge_point_id=cp_id)
            await previous.close(1000, "superseded by a new connection")
        station = protocol_cls(cp_id, ws, self._services)
        self.metrics.connected.inc()
        log.info("station connected", charge_point_id=cp_id, subprotocol=ws.subprotocol)
        try:
            async for raw in ws:
                await station.route_message(raw)
        except ConnectionClosed as exc:
            log.info("station connection closed", charge_point_id=cp_id,
                     code=exc.rcvd.code if exc.rcvd else None)
        finally:
            self.metrics.connected.dec()
            if self._connections.get(cp_id) is ws:
                del self._connections[cp_id]
            log.info("station disconnected", charge_point_id=cp_id)
