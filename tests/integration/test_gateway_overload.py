"""Overload degrades by answering later, never by disconnecting: stations whose frames
wait on the gateway (per-connection rate limit, or more CALLs in flight than it
publishes) keep their connections through many keepalive periods, and every CALL is
answered; a peer that really stopped answering is still closed by the keepalive."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from tests.support.gateway import basic_auth, gateway_config, open_station, provision, rpc

pytestmark = pytest.mark.integration

# Keepalive a hundred times faster than the default (20 s / 20 s), so that a backlog
# of well under a second spans several ping periods.
FAST_KEEPALIVE = {"ping_interval_s": 0.1, "ping_timeout_s": 0.2}


def meter_values(n: int) -> str:
    return json.dumps(
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-01-05T10:00:00.000Z",
                    "sampledValue": [
                        {
                            "value": str(1000 + n),
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        }
                    ],
                }
            ],
        }
    )


async def pipeline(ws: ClientConnection, name: str, calls: int) -> dict[str, Any]:
    """Send ``calls`` MeterValues at once (no waiting for answers), then read every
    answer; returns how many CALLRESULTs came and whether the connection survived."""
    await rpc(ws, "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X"})
    for n in range(calls):
        await ws.send(f'[2,"{name}-{n}","MeterValues",{meter_values(n)}]')
    answered: set[str] = set()
    async with asyncio.timeout(120):
        while len(answered) < calls:
            frame = json.loads(await ws.recv())
            assert frame[0] == 3, frame
            answered.add(frame[1])
    # Still open after the backlog: the next CALL is answered at once.
    assert (await rpc(ws, "Heartbeat", {}))[0] == 3
    return {"answered": len(answered)}


async def run_fleet(gw: Gateway, stations: int, calls: int, prefix: str) -> None:
    fleet = [await open_station(gw, f"{prefix}-{i}") for i in range(stations)]
    try:
        results = await asyncio.gather(
            *(pipeline(ws, f"{prefix}{i}", calls) for i, ws in enumerate(fleet))
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in fleet))
    assert [r["answered"] for r in results] == [calls] * stations
    assert gw.metrics.keepalive_closes._value.get() == 0


async def test_rate_limited_stations_keep_their_connections(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """Each station offers 40 CALLs at once against a limit of 40 frames/s read per
    connection: websockets stops reading each socket (4 frames queued) for about a
    second, ten keepalive periods."""
    cfg = gateway_config(
        broker,
        clean_db,
        topics,
        max_messages_per_s=40.0,
        message_burst=1,
        max_queued_frames=4,
        **FAST_KEEPALIVE,
    )
    async with Gateway(cfg) as gw:
        await run_fleet(gw, stations=10, calls=40, prefix="CP-RL")


async def test_stations_beyond_publish_capacity_keep_their_connections(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """No rate limit: 30 stations x 80 CALLs in flight at once, each answered only after
    Kafka confirmed it, one at a time per station: each station's backlog takes several
    keepalive periods to work through."""
    cfg = gateway_config(
        broker,
        clean_db,
        topics,
        max_messages_per_s=100_000.0,
        message_burst=100_000,
        max_queued_frames=4,
        **FAST_KEEPALIVE,
    )
    async with Gateway(cfg) as gw:
        await run_fleet(gw, stations=30, calls=80, prefix="CP-BL")


def handshake(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: ocpp1.6",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_peer_that_answers_no_ping_is_closed(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """A raw TCP peer completes the WebSocket handshake and then never reads or
    answers anything: the gateway pings, gets no pong while it waits, closes 1011."""
    cfg = gateway_config(broker, clean_db, topics, **FAST_KEEPALIVE)
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-DEAD")
        host, port = cfg.host, gw.port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(handshake(host, port, "/ocpp/CP-DEAD", basic_auth("CP-DEAD")))
            status = await reader.readuntil(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 101"), status
            close_code = None
            async with asyncio.timeout(20):
                while close_code is None:
                    head = await reader.readexactly(2)
                    length = head[1] & 0x7F
                    if length == 126:
                        length = struct.unpack("!H", await reader.readexactly(2))[0]
                    body = await reader.readexactly(length)
                    if head[0] & 0x0F == 0x8:  # close frame: code first
                        close_code = struct.unpack("!H", body[:2])[0]
            assert close_code == 1011
            assert gw.metrics.keepalive_closes._value.get() == 1
        finally:
            writer.close()
