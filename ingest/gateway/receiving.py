"""The receive loop of one station connection: frames to the station's protocol at
the connection's message rate, with the silence check and the keepalive as timers.

Two timers per connection interrupt only a waiting ``recv`` (safe to cancel), never
the handling of a CALL: the silence check fires at most once per silence period (it
re-arms itself for the rest of the period when frames came in meanwhile), and the
keepalive (``keepalive.Keepalive``) pings a quiet station and closes the connection
(1011) only when a ping went unanswered while the gateway was waiting for the
station, never because the gateway is behind.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ingest.gateway.config import GatewayConfig
from ingest.gateway.keepalive import Action as KeepaliveAction
from ingest.gateway.keepalive import Keepalive
from ingest.gateway.limits import TokenBucket
from ingest.gateway.services import GatewayMetrics

log = structlog.get_logger("chargeflow.gateway")


class ReceiveLoop:
    """``await ReceiveLoop(...).run()`` feeds frames until the connection ends and
    returns why it ended (``ConnectionClosed`` passes through)."""

    def __init__(
        self, ws: ServerConnection, station: Any, cfg: GatewayConfig, metrics: GatewayMetrics
    ) -> None:
        self.ws = ws
        self.station = station
        self.cfg = cfg
        self.metrics = metrics
        self.bucket = TokenBucket(cfg.max_messages_per_s, cfg.message_burst)
        self.silence_s = cfg.heartbeat_interval_s * cfg.silence_timeout_factor
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.last_frame = self.loop.time()
        self.receiving = False
        self.interrupted: str | None = None  # "silent" | "dead": why recv was cancelled
        self.silence_timer: asyncio.TimerHandle | None = None
        self.keepalive = Keepalive(cfg.ping_interval_s, cfg.ping_timeout_s, self.last_frame)
        self.keepalive_timer: asyncio.TimerHandle | None = None
        self.pings: set[asyncio.Task[None]] = set()

    async def run(self) -> str:
        if self.silence_s > 0:
            self.silence_timer = self.loop.call_later(self.silence_s, self._check_silence)
        if self.keepalive.enabled:
            self.keepalive_timer = self.loop.call_later(
                self.keepalive.interval_s, self._check_keepalive
            )
        try:
            while True:
                self.receiving = True
                self.keepalive.waiting(self.loop.time())
                try:
                    raw = await self.ws.recv()
                except asyncio.CancelledError:
                    if self.interrupted is None:
                        raise
                    self.task.uncancel()
                    return await self._close_interrupted()
                self.receiving = False
                self.last_frame = self.loop.time()
                self.keepalive.frame(self.last_frame)
                wait = self.bucket.take()
                if wait > 0:
                    self.metrics.throttled.inc()
                    await asyncio.sleep(wait)
                await self.station.route_message(raw)
        finally:
            self._cancel_timers()

    async def _close_interrupted(self) -> str:
        """Close the connection a timer interrupted; returns why."""
        if self.interrupted == "dead":
            self.metrics.keepalive_closes.inc()
            timeout_s = self.cfg.ping_timeout_s
            log.info(
                "station answered no ping, closing",
                charge_point_id=self.station.id,
                ping_timeout_s=timeout_s,
            )
            code, close_reason = 1011, "keepalive ping timeout"
            why = f"no pong within {timeout_s:g} s"
        else:
            self.metrics.silent_closes.inc()
            log.info(
                "station silent for too long, closing",
                charge_point_id=self.station.id,
                silent_s=self.silence_s,
            )
            code, close_reason = 1000, "no message within the heartbeat timeout"
            why = f"silent for {self.silence_s:g} s"
        await self.ws.close(code, close_reason)
        return why

    def _cancel_timers(self) -> None:
        if self.silence_timer is not None:
            self.silence_timer.cancel()
        if self.keepalive_timer is not None:
            self.keepalive_timer.cancel()
        for sent in list(self.pings):
            sent.cancel()

    def _interrupt(self, why: str) -> None:
        self.interrupted = why
        self.task.cancel()

    def _check_silence(self) -> None:
        left = self.last_frame + self.silence_s - self.loop.time()
        if left > 0 or not self.receiving or self.interrupted:  # a frame came in, or busy
            self.silence_timer = self.loop.call_later(
                left if left > 0 else self.silence_s, self._check_silence
            )
            return
        self.silence_timer = None
        self._interrupt("silent")

    async def _ping(self) -> None:
        try:
            await (await self.ws.ping())
        except ConnectionClosed:
            return
        self.keepalive.pong(self.loop.time())

    def _check_keepalive(self) -> None:
        now = self.loop.time()
        transport = self.ws.transport
        self.keepalive.writes(now, transport is not None and transport.get_write_buffer_size() > 0)
        action = self.keepalive.due(now)
        if action is KeepaliveAction.CLOSE and not self.interrupted:
            self.keepalive_timer = None
            if not self.receiving:  # blocked writing to a station that reads nothing
                self.metrics.keepalive_closes.inc()
                log.info(
                    "station reads nothing of what is sent to it, dropping",
                    charge_point_id=self.station.id,
                    timeout_s=self.cfg.ping_timeout_s,
                )
                if transport is not None:
                    transport.abort()  # the pending send fails: ConnectionClosed
                return
            self._interrupt("dead")
            return
        if action is KeepaliveAction.PING:
            self.keepalive.pinged(now)
            sent = self.loop.create_task(self._ping(), name=f"ping-{self.station.id}")
            self.pings.add(sent)
            sent.add_done_callback(self.pings.discard)
        self.keepalive_timer = self.loop.call_later(
            self.keepalive.next_check_in(now), self._check_keepalive
        )
