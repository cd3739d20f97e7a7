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
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bus.producer import Producer, producer_config
from ingest.gateway import v16, v201
from ingest.gateway.commands import CommandRouter
from ingest.gateway.config import GatewayConfig
from ingest.gateway.health import Readiness
from ingest.gateway.keepalive import Action as KeepaliveAction
from ingest.gateway.keepalive import Keepalive
from ingest.gateway.liveness import Liveness
from ingest.gateway.protocol import CentralSystemBase
from ingest.gateway.security import REALM, Authenticator, FailureLimiter, TokenBucket
from ingest.gateway.services import GatewayMetrics, GatewayServices, utc_now

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


_gc_started: list[float] = []


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        took = time.perf_counter() - _gc_started[0]
        if took > 0.05:
            log.warning(
                "long garbage collection",
                generation=info.get("generation"),
                seconds=round(took, 3),
                collected=info.get("collected"),
            )


_gc_watchers: list[int] = [0]  # gateways in this process watching GC pauses


def _watch_gc() -> None:
    _gc_watchers[0] += 1
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


def _unwatch_gc() -> None:
    """The last gateway to stop removes the callback, so nothing logs after shutdown
    (e.g. at interpreter exit, when the log stream may be closed)."""
    _gc_watchers[0] = max(0, _gc_watchers[0] - 1)
    if _gc_watchers[0] == 0 and _gc_callback in gc.callbacks:
        gc.callbacks.remove(_gc_callback)


def tune_gc(gen0: int) -> None:
    """Fewer, cheaper collections for a long-running gateway: everything alive after
    start-up (modules, schemas, pools) is frozen out of the collector's scans, and the
    young generation is collected every ``gen0`` allocations instead of 700, so the
    objects of CALLs in flight die young instead of being promoted and then scanned
    by full collections (measured: 0.2-0.4 s full-collection pauses every ~3 s at
    2,000 CALLs/s with the defaults)."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 700), gen1, gen2)


class Gateway:
    """``async with Gateway(config) as gw:`` serves until the block ends."""

    def __init__(self, config: GatewayConfig, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        # Process metrics (CPU, memory, fds, GC, Python version) next to the gateway's.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.readiness: Readiness | None = None
        self._server: Server | None = None
        self._pool: AsyncConnectionPool | None = None
        self._producer: Producer | None = None
        self._services: GatewayServices | None = None
        self._connections: dict[str, ServerConnection] = {}
        # The protocol object of each connection in _connections (commands are sent
        # through it, see ingest.gateway.commands).
        self._stations: dict[str, CentralSystemBase] = {}
        self.commands: CommandRouter | None = None
        self.port: int = config.port
        self._watching_gc = False
        self.gateway_id = config.gateway_id
        self.tls = bool(config.tls_cert)
        self.authenticator: Authenticator | None = None
        self.liveness: Liveness | None = None

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
        _watch_gc()
        self._watching_gc = True
        await asyncio.to_thread(v16.SCHEMAS.warm)
        await asyncio.to_thread(v201.SCHEMAS.warm)
        self._pool = AsyncConnectionPool(
            cfg.database_url,
            min_size=1,
            max_size=cfg.db_pool_max_size,
            open=False,
            kwargs={"autocommit": True},
            name="gateway",
        )
        await self._pool.open(wait=True, timeout=30)
        self._producer = Producer(
            producer_config(
                cfg.kafka_bootstrap,
                delivery_timeout_ms=cfg.delivery_timeout_ms,
                extra={"linger.ms": cfg.producer_linger_ms},
            ),
            guard_s=cfg.delivery_timeout_ms / 1000 + 2.0,
        )
        self._producer.start()
        self.readiness = Readiness(self._pool, self._producer, cfg.topics.ocpp_events)
        self._services = GatewayServices(
            pool=self._pool,
            producer=self._producer,
            topics=cfg.topics,
            metrics=self.metrics,
            heartbeat_interval_s=cfg.heartbeat_interval_s,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            data_transfer_vendor_ids=frozenset(cfg.data_transfer_vendor_ids),
            gateway_id=self.gateway_id,
            id_tag_cache_ttl_s=cfg.id_tag_cache_ttl_s,
            allow_concurrent_transactions=cfg.allow_concurrent_transactions,
            open_transaction_max_age_s=cfg.open_transaction_max_age_s,
            validate_responses=cfg.validate_responses,
            last_seen_interval_s=cfg.last_seen_interval_s,
        )
        self._services.last_seen.start()
        self.authenticator = Authenticator(
            pool=self._pool,
            gateway_id=self.gateway_id,
            tls=self.tls,
            station_limiter=FailureLimiter(
                cfg.auth_failure_limit_station, cfg.auth_failure_window_s, cfg.auth_cooldown_s
            ),
            ip_limiter=FailureLimiter(
                cfg.auth_failure_limit_ip, cfg.auth_failure_window_s, cfg.auth_cooldown_s
            ),
            cache_ttl_s=cfg.auth_cache_ttl_s,
            max_concurrent_verifications=cfg.max_concurrent_verifications,
            max_pending_verifications=cfg.max_pending_verifications,
            alert=self._services.publish_alert,
            metrics=self.metrics,
            cache_key=cfg.auth_cache_key,
            failure_delay_s=cfg.auth_failure_delay_s,
            max_concurrent_logins=cfg.max_concurrent_logins,
            max_login_wait_s=cfg.open_timeout_s / 6,
        )
        if not self.authenticator.persistent_cache:
            log.info(
                "no auth cache key set (CHARGEFLOW_GATEWAY_AUTH_CACHE_KEY): after a "
                "restart every station's password is verified with argon2 again"
            )
        self.liveness = Liveness(self._services, self.gateway_id, cfg.offline_grace_s)
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
        self.commands = CommandRouter(
            gateway_id=self.gateway_id,
            bootstrap=cfg.kafka_bootstrap,
            topics=cfg.topics,
            pool=self._pool,
            producer=self._producer,
            lookup=self._stations.get,
            registry=self.registry,
            heartbeat_s=cfg.replica_heartbeat_s,
            grace_s=cfg.replica_grace_s,
        )
        await self.commands.start()
        self.liveness.start_sweeping(
            cfg.replica_heartbeat_s, cfg.replica_grace_s, self.held_stations
        )

    async def stop(self) -> None:
        if self.commands is not None:  # first: commands in flight still get recorded
            await self.commands.stop()
            self.commands = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self.liveness is not None:
            await self.liveness.close()
            self.liveness = None
        if self.authenticator is not None:
            await self.authenticator.drain()
            self.authenticator = None
        if self._services is not None:
            await self._services.last_seen.close()
        if self._producer is not None:
            await self._producer.aclose(10.0)
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._watching_gc:
            _unwatch_gc()
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

    # Complexity over the limit on purpose: the one loop of a connection (keepalive,
    # backpressure, frames).
    async def _receive_loop(self, ws: ServerConnection, station: Any) -> str:  # noqa: C901
        """Feed frames to the station's protocol until the connection ends; returns why.

        Two timers per connection interrupt only a waiting ``recv`` (safe to cancel),
        never the handling of a CALL: the silence check fires at most once per silence
        period (it re-arms itself for the rest of the period when frames came in
        meanwhile), and the keepalive (``keepalive.Keepalive``) pings a quiet station
        and closes the connection (1011) only when a ping went unanswered while the
        gateway was waiting for the station, never because the gateway is behind."""
        cfg = self.config
        bucket = TokenBucket(cfg.max_messages_per_s, cfg.message_burst)
        silence_s = cfg.heartbeat_interval_s * cfg.silence_timeout_factor
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        last_frame = loop.time()
        receiving = False
        interrupted: str | None = None  # "silent" | "dead": why recv was cancelled
        timer: asyncio.TimerHandle | None = None
        keepalive = Keepalive(cfg.ping_interval_s, cfg.ping_timeout_s, last_frame)
        keepalive_timer: asyncio.TimerHandle | None = None
        pings: set[asyncio.Task[None]] = set()

        def check_silence() -> None:
            nonlocal timer, interrupted
            left = last_frame + silence_s - loop.time()
            if left > 0 or not receiving or interrupted:  # a frame came in, or busy
                timer = loop.call_later(left if left > 0 else silence_s, check_silence)
                return
            timer = None
            interrupted = "silent"
            task.cancel()

        async def ping() -> None:
            try:
                await (await ws.ping())
            except ConnectionClosed:
                return
            keepalive.pong(loop.time())

        def check_keepalive() -> None:
            nonlocal keepalive_timer, interrupted
            now = loop.time()
            transport = ws.transport
            keepalive.writes(now, transport is not None and transport.get_write_buffer_size() > 0)
            action = keepalive.due(now)
            if action is KeepaliveAction.CLOSE and not interrupted:
                keepalive_timer = None
                if not receiving:  # blocked writing to a station that reads nothing
                    self.metrics.keepalive_closes.inc()
                    log.info(
                        "station reads nothing of what is sent to it, dropping",
                        charge_point_id=station.id,
                        timeout_s=cfg.ping_timeout_s,
                    )
                    if transport is not None:
                        transport.abort()  # the pending send fails: ConnectionClosed
                    return
                interrupted = "dead"
                task.cancel()
                return
            if action is KeepaliveAction.PING:
                keepalive.pinged(now)
                sent = loop.create_task(ping(), name=f"ping-{station.id}")
                pings.add(sent)
                sent.add_done_callback(pings.discard)
            keepalive_timer = loop.call_later(keepalive.next_check_in(now), check_keepalive)

        if silence_s > 0:
            timer = loop.call_later(silence_s, check_silence)
        if keepalive.enabled:
            keepalive_timer = loop.call_later(keepalive.interval_s, check_keepalive)
        try:
            while True:
                receiving = True
                keepalive.waiting(loop.time())
                try:
                    raw = await ws.recv()
                except asyncio.CancelledError:
                    if interrupted is None:
                        raise
                    task.uncancel()
                    if interrupted == "dead":
                        self.metrics.keepalive_closes.inc()
                        log.info(
                            "station answered no ping, closing",
                            charge_point_id=station.id,
                            ping_timeout_s=cfg.ping_timeout_s,
                        )
                        await ws.close(1011, "keepalive ping timeout")
                        return f"no pong within {cfg.ping_timeout_s:g} s"
                    self.metrics.silent_closes.inc()
                    log.info(
                        "station silent for too long, closing",
                        charge_point_id=station.id,
                        silent_s=silence_s,
                    )
                    await ws.close(1000, "no message within the heartbeat timeout")
                    return f"silent for {silence_s:g} s"
                receiving = False
                last_frame = loop.time()
                keepalive.frame(last_frame)
                wait = bucket.take()
                if wait > 0:
                    self.metrics.throttled.inc()
                    await asyncio.sleep(wait)
                await station.route_message(raw)
        finally:
            if timer is not None:
                timer.cancel()
            if keepalive_timer is not None:
                keepalive_timer.cancel()
            for sent in list(pings):
                sent.cancel()
