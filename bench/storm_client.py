"""The lean storm client: raw asyncio streams instead of the ``websockets`` client.

The ``websockets`` client spent as much CPU per station as the gateway did, and both
share the two cores of the bench machine, so the client slowed the storm it measured.
Here a station is one TCP connection doing what a charge point does after a restart:
the HTTP upgrade with Basic auth (``ocpp1.6``), a BootNotification and a
StatusNotification as OCPP-J text frames, each answer read before the next CALL. Client
frames carry the all-zero masking key (RFC 6455 requires a key, the server unmasks with
whatever it is), so masking costs nothing. Pings from the gateway's keepalive are
answered while the station stays connected.

Reported per run: ``all_connected_s`` (every upgrade accepted), ``all_back_s`` (every
StatusNotification answered), 503/429 counts, failures by kind, the client's CPU-s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from bench.loadgen import percentiles

BOOT = {"chargePointVendor": "bench", "chargePointModel": "storm"}
STATUS = {"connectorId": 0, "errorCode": "NoError", "status": "Available"}


class HttpRefused(Exception):
    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def text_frame(payload: bytes) -> bytes:
    """A masked (all-zero key) final text frame."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


def control_frame(opcode: int, payload: bytes) -> bytes:
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked server frame (servers send no fragments here)."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


async def upgrade(
    host: str, port: int, path: str, cp_id: str, password: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path}/{cp_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: Basic {token}\r\n\r\n"
        ).encode()
    )
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except BaseException:
        writer.close()
        raise
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    if status != 101:
        writer.close()
        retry_after = 1.0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "retry-after":
                retry_after = float(value.strip())
        raise HttpRefused(status, retry_after)
    return reader, writer


async def call(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    msg_id: str,
    action: str,
    payload: Any,
) -> list[Any]:
    """Send one CALL and return its CALLRESULT/CALLERROR (answering pings meanwhile)."""
    writer.write(text_frame(json.dumps([2, msg_id, action, payload]).encode()))
    while True:
        opcode, data = await read_frame(reader)
        if opcode == 0x9:
            writer.write(control_frame(0xA, data))
        elif opcode == 0x8:
            raise ConnectionError("closed by the gateway")
        elif opcode == 0x1:
            frame = json.loads(data)
            if frame[0] in (3, 4) and frame[1] == msg_id:
                return list(frame)


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Stay connected: answer pings until the gateway closes or the task is cancelled."""
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 0x9:
                writer.write(control_frame(0xA, data))
            elif opcode == 0x8:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


async def lean_client(url: str, ids: list[str], password: str, timeout_s: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    connected_after: list[float] = []
    back_after: list[float] = []
    holders: list[asyncio.Task[None]] = []
    started = time.monotonic()
    deadline = started + timeout_s

    async def station(cp_id: str) -> None:
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                    reader, writer = await upgrade(host, port, path, cp_id, password)
                    connected_after.append(time.monotonic() - started)
                    boot = await call(reader, writer, "1", "BootNotification", BOOT)
                    status = await call(reader, writer, "2", "StatusNotification", STATUS)
            except HttpRefused as exc:
                statuses[exc.status] += 1
                if exc.status not in (429, 503):
                    failures[f"http {exc.status}"] += 1
                    return
                await asyncio.sleep(exc.retry_after)
                continue
            except Exception as exc:  # a station would retry too; count it
                failures[type(exc).__name__] += 1
                await asyncio.sleep(1.0)
                continue
            if boot[0] != 3 or boot[2].get("status") != "Accepted" or status[0] != 3:
                failures["boot or status not accepted"] += 1
            back_after.append(time.monotonic() - started)
            holders.append(asyncio.create_task(hold(reader, writer)))
            return
        failures["not back before the timeout"] += 1

    async with asyncio.TaskGroup() as group:
        for cp_id in ids:
            group.create_task(station(cp_id))
    everyone = len(back_after) == len(ids)
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    return {
        "client": "lean",
        "stations": len(ids),
        "connected": len(back_after),
        "all_connected_s": round(max(connected_after), 2) if everyone else None,
        "all_back_s": round(max(back_after), 2) if everyone else None,
        "connected_after_ms": percentiles([1000 * t for t in connected_after]),
        "back_after_ms": percentiles([1000 * t for t in back_after]),
        **outcome_counts(failures, statuses),
    }


def outcome_counts(failures: Counter[str], statuses: Counter[int]) -> dict[str, Any]:
    """Failures, HTTP refusals and the client's CPU-s (both storm clients)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "failures": sum(failures.values()),
        "failure_kinds": dict(failures),
        "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "lockouts": statuses.get(429, 0),
        "busy_503": statuses.get(503, 0),
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }
