"""A gateway under test and stations talking to it: configuration, provisioning,
connecting (1.6 and 2.0.1), OCPP-J calls, what the gateway published, and one
simulated station that answers commands (``sim_station``)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bus.admin import read_topic
from bus.envelope import Envelope, Kind, decode_envelope
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from ingest.simulator.clock import SimClock
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import provision as provision_fleet
from ingest.simulator.report import FleetReport
from ingest.simulator.station import SimulatedStation
from store.stations import provision_station
from tests.support.polling import poll_until

NOW = "2026-01-05T10:00:00.000Z"


def gateway_config(
    broker: EmbeddedBroker, database_url: str, topics: Topics, **overrides: Any
) -> GatewayConfig:
    """Tests also check every CALLRESULT the gateway builds against its schema, and
    leave the test process's garbage collector alone (no freeze per gateway)."""
    overrides.setdefault("validate_responses", True)
    overrides.setdefault("gc_young_threshold", 0)
    return GatewayConfig(
        kafka_bootstrap=broker.bootstrap, database_url=database_url, topics=topics, **overrides
    )


STATION_PASSWORD = "test-station-password-1"


def basic_auth(cp_id: str, password: str = STATION_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def provision(gw: Gateway, cp_id: str, password: str = STATION_PASSWORD) -> None:
    """Stations must be provisioned (with a password) before they may connect."""
    await asyncio.to_thread(provision_station, gw.config.database_url, cp_id, password=password)


async def open_station(
    gw: Gateway, cp_id: str, subprotocols: tuple[str, ...] = ("ocpp1.6",)
) -> ClientConnection:
    await provision(gw, cp_id)
    return await connect(
        f"{gw.url}/{cp_id}",
        subprotocols=list(subprotocols),  # type: ignore[arg-type]
        additional_headers=basic_auth(cp_id),
    )


async def rpc(
    ws: ClientConnection, action: str, payload: dict[str, Any], unique_id: str | None = None
) -> list[Any]:
    """Send a CALL and return the answer frame (CALLRESULT or CALLERROR)."""
    uid = unique_id or uuid.uuid4().hex[:20]
    await ws.send(json.dumps([2, uid, action, payload]))
    return await receive(ws, uid)


async def receive(ws: ClientConnection, unique_id: str) -> list[Any]:
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await ws.recv())
            if frame[1] == unique_id:
                return list(frame)


def envelopes(
    broker: EmbeddedBroker, topic: str, kind: Kind | None = Kind.OCPP_CALL
) -> list[Envelope]:
    """Envelopes of one kind (default: CALLs, not connection events); None = all."""
    got = [decode_envelope(m.value()) for m in read_topic(broker.bootstrap, topic)]
    return [e for e in got if kind is None or e.kind == kind]


def wait_for_envelopes(broker: EmbeddedBroker, topic: str, count: int) -> list[Envelope]:
    return poll_until(
        lambda: envelopes(broker, topic),
        lambda e: len(e) >= count,
        20,
        f"{count} envelopes on {topic}",
    )


def alerts(broker: EmbeddedBroker, topics: Topics) -> list[Envelope]:
    return [decode_envelope(m.value()) for m in read_topic(broker.bootstrap, topics.alerts)]


def connection_events(broker: EmbeddedBroker, topics: Topics, cp_id: str) -> list[Envelope]:
    return [
        e
        for e in (
            decode_envelope(m.value()) for m in read_topic(broker.bootstrap, topics.ocpp_events)
        )
        if e.kind == Kind.STATION_CONNECTION and e.charge_point_id == cp_id
    ]


async def open_v201(gw: Gateway, cp_id: str) -> ClientConnection:
    ws = await open_station(gw, cp_id, ("ocpp2.0.1",))
    assert ws.subprotocol == "ocpp2.0.1"
    return ws


def register(
    value: float | int, context: str, at: str = NOW, unit: str = "Wh"
) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": at,
            "sampledValue": [
                {
                    "value": value,
                    "context": context,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": unit},
                }
            ],
        }
    ]


SIM_TAG = "CMD-TAG-1"


@asynccontextmanager
async def sim_station(
    gw: Gateway, cp_prefix: str, version: str, **overrides: Any
) -> AsyncIterator[SimulatedStation]:
    """One simulated station that stays connected, charges only when told to and
    reports every 60 simulated s (0.5 s real)."""
    base: dict[str, Any] = dict(
        gateway_url=gw.url,
        stations=1,
        station_id_prefix=cp_prefix,
        sessions_per_station=None,
        mean_arrival_gap_s=1e12,
        mean_dwell_s=1e12,
        meter_interval_s=60,
        time_scale=120,
        call_timeout_s=5,
        id_tags=(SIM_TAG,),
        database_url=gw.config.database_url,
        station_password=STATION_PASSWORD,
        ocpp_versions=(version,),
        seed=3,
        max_power_w=22_000.0,
    )
    base.update(overrides)
    config = FleetConfig(**base)
    await asyncio.to_thread(provision_fleet, config)
    station = SimulatedStation(
        config.station_ids()[0],
        config,
        FleetReport(),
        SimClock(config.time_scale),
        ocpp_version=version,
    )
    task = asyncio.create_task(station.run())
    try:
        async with asyncio.timeout(20):
            await station._booted_once.wait()
        yield station
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
