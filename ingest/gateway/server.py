"""WebSocket transport of the gateway: ``ws://host:port/ocpp/{charge_point_id}``.

The upgrade is refused with HTTP 404 for other paths and HTTP 400 when the
client offers no supported OCPP subprotocol; then the station must authenticate
(``security``: 404 unknown station, 401 bad credentials, 403 profile 2 without TLS,
429 source cooling down after repeated failures, 503 too many logins waiting).
Plain HTTP on the same port: ``/livez`` (also ``/healthz``, ``/health``): the process
serves; ``/readyz``: broker and database reachable (``health``); ``/metrics``:
Prometheus text with process metrics. With ``tls_cert``/``tls_key`` the port
speaks TLS only (``wss://``, security profile 2).

Per connection: frames are read at most ``max_messages_per_s`` (token bucket with
``message_burst``); beyond that the gateway simply reads later, so the station's
TCP window fills and it is slowed down (backpressure) without errors or loss. CALLs
are handled one at a time, at most ``max_queued_frames`` frames wait unread. A
station silent for ``heartbeat_interval_s x silence_timeout_factor`` is disconnected.
Connect/disconnect feed ``liveness`` (online/offline envelopes, station_connections).

Each connection is handled by the version-specific protocol class chosen by the
negotiated subprotocol; frames larger than ``max_frame_bytes`` close that connection with 1009.

Subprotocols: ``ocpp2.0.1`` and ``ocpp1.6``. A station that offers both gets
``ocpp2.0.1``: the server picks in its own order (``PROTOCOLS``), and the newer
version is the richer one (EVSE model, string transaction ids, security events).
A station is recorded with the version it booted with (BootNotification).

This module is the transport only: the collaborators it serves stations with (pool,
producer, services, authenticator, liveness, command router) are built, opened and
closed by ``app.GatewayApp``; the receive loop of a connection is ``receiving``.
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bus.times import utc_now
from ingest.gateway import v16, v201
from ingest.gateway.app import GatewayApp
from ingest.gateway.commands import CommandRouter
from ingest.gateway.config import GatewayConfig
from ingest.gateway.health import Readiness
from ingest.gateway.liveness import Liveness
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.receiving import ReceiveLoop
from ingest.gateway.security import REALM, Authenticator
from ingest.gateway.services import GatewayMetrics
from runtime.gc import tune_gc, unwatch_gc_pauses, watch_gc_pauses

log = structlog.get_logger("chargeflow.gateway")

# Subprotocol -> protocol class, in order of preference (the first offered one wins).
PROTOCOLS: dict[str, Any] = {
    v201.SUBPROTOCOL: v201.CentralSystemV201,
    v16.SUBPROTOCOL: v16.CentralSystemV16,
}
PATH_PREFIX = "/ocpp/"
# Plain HTTP on the gateway's port: liveness (three names), readiness, metrics.
HTTP_ENDPOINTS = frozenset({"/livez", "/healthz", "/health", "/readyz", "/metrics"})


def _with_content_type(response: Response, content_type: str) -> Response:
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


def charge_point_id_from_path(path: str) -> str | None:
    """``/ocpp/CP-1`` -> ``CP-1``; ``None`` for anything else."""
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    cp_id = unquote(path[len(PATH_PREFIX) :])
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

    def __init__(
        self,
        config: GatewayConfig,
        *,
        registry: CollectorRegistry | None = None,
        app: GatewayApp | None = None,
    ) -> None:
        self.config = config
        self.app = app if app is not None else GatewayApp(config, registry)
        self._server: Server | None = None
        self._connections: dict[str, ServerConnection] = {}
        # The protocol object of each connection in _connections (commands are sent
        # through it, see ingest.gateway.commands).
        self._stations: dict[str, CentralSystemBase] = {}
        self.port: int = config.port
        self._watching_gc = False
        self.gateway_id = config.gateway_id
        self.tls = bool(config.tls_cert)

    @property
    def registry(self) -> CollectorRegistry:
        return self.app.registry

    @property
    def metrics(self) -> GatewayMetrics:
        return self.app.metrics

    @property
    def readiness(self) -> Readiness | None:
        return self.app.readiness

    @property
    def authenticator(self) -> Authenticator | None:
        return self.app.authenticator

    @property
    def liveness(self) -> Liveness | None:
        return self.app.liveness

    @property
    def commands(self) -> CommandRouter | None:
        return self.app.commands

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.config.host}:{self.port}/ocpp"

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if not cfg.tls_cert and not cfg.tls_key:
            return None
        if not (cfg.tls_cert and cfg.tls_key):
            raise ValueError("TLS needs both tls_cert and tls_key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        return context

    async def start(self) -> None:
        cfg = self.config
        watch_gc_pauses()
        self._watching_gc = True
        await self.app.open()
        self._server = await serve(
            self._handle_connection,
            cfg.host,
            cfg.port,
            subprotocols=list(PROTOCOLS),  # type: ignore[arg-type]
            process_request=self._process_request,
            max_size=cfg.max_frame_bytes,
            max_queue=cfg.max_queued_frames,
            ssl=self._ssl_context(),
            open_timeout=cfg.open_timeout_s,
            # The gateway's own keepalive (keepalive.py) pings; websockets' would time
            # pongs out while this gateway is behind on reading (backpressure).
            ping_interval=None,
            compression="deflate" if cfg.permessage_deflate else None,
            backlog=cfg.listen_backlog,
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        log.info(
            "gateway listening", url=self.url, protocols=list(PROTOCOLS), gateway_id=self.gateway_id
        )
        tune_gc(cfg.gc_young_threshold)
        await self.app.start_commands(self._stations.get, self.held_stations)

    async def stop(self) -> None:
        await self.app.stop_commands()  # first: commands in flight still get recorded
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.app.close()
        if self._watching_gc:
            unwatch_gc_pauses()
            self._watching_gc = False
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

    def held_stations(self) -> dict[str, str | None]:
        """The stations whose socket this replica holds, with their OCPP version."""
        return {cp: station.OCPP_VERSION for cp, station in self._stations.items()}

    # --------------------------------------------------------------- handshake

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in HTTP_ENDPOINTS:
            return await self._serve_http(connection, path)
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
        return await self._authenticate(connection, request)

    async def _serve_http(self, connection: ServerConnection, path: str) -> Response:
        """Liveness, readiness (``ingest.gateway.health``) and Prometheus metrics."""
        if path == "/metrics":
            return _with_content_type(
                connection.respond(HTTPStatus.OK, generate_latest(self.registry).decode()),
                CONTENT_TYPE_LATEST,
            )
        if path == "/readyz":
            if self.readiness is None:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "starting\n")
            report = await self.readiness.report()
            status = HTTPStatus.OK if report.ready else HTTPStatus.SERVICE_UNAVAILABLE
            return _with_content_type(connection.respond(status, report.body()), "application/json")
        return connection.respond(HTTPStatus.OK, "ok\n")  # liveness: the process serves

    async def _authenticate(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        cp_id = charge_point_id_from_path(request.path)
        assert cp_id is not None
        assert self.authenticator is not None
        peer = connection.remote_address
        source_ip = str(peer[0]) if peer else None
        outcome = await self.authenticator.authenticate(
            cp_id, request.headers.get("Authorization"), source_ip
        )
        if outcome.accepted:
            return None
        self.metrics.rejected_handshakes.labels(outcome.reason).inc()
        assert outcome.status is not None
        response = connection.respond(outcome.status, outcome.message)
        if outcome.status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = REALM
        if outcome.retry_after_s is not None:
            response.headers["Retry-After"] = str(outcome.retry_after_s)
        return response

    # -------------------------------------------------------------- connection

    async def _handle_connection(self, ws: ServerConnection) -> None:
        services = self.app.services
        assert services is not None
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
        station = protocol_cls(cp_id, ws, services)
        self._stations[cp_id] = station
        self.metrics.connected.inc()
        log.info("station connected", charge_point_id=cp_id, subprotocol=ws.subprotocol)
        assert self.liveness is not None
        liveness = self.liveness
        await liveness.connected(cp_id, station.OCPP_VERSION, utc_now())
        reason = "connection closed"
        try:
            reason = await self._receive_loop(ws, station)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            reason = f"connection closed (code {code})" if code else "connection lost"
            log.info("station connection closed", charge_point_id=cp_id, code=code)
        finally:
            self.metrics.connected.dec()
            still_held = self._connections.get(cp_id) is not ws
            if self._stations.get(cp_id) is station:
                del self._stations[cp_id]
            if self.commands is not None:
                self.commands.station_disconnected(station)
            if not still_held:
                del self._connections[cp_id]
                if self._server is None or not self._server.is_serving():
                    reason = "gateway stopping"
                await liveness.disconnected(cp_id, station.OCPP_VERSION, reason)
            log.info("station disconnected", charge_point_id=cp_id, reason=reason)

    async def _receive_loop(self, ws: ServerConnection, station: Any) -> str:
        """Feed frames to the station's protocol until the connection ends; returns why."""
        return await ReceiveLoop(ws, station, self.config, self.metrics).run()
