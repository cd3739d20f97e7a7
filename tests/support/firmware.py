"""Firmware rollouts under test: several simulated stations on one gateway, a rollout's
state through the API, and what reached the stations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import psycopg

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from ingest.simulator.station import SimulatedStation
from tests.support.api import api_client, auth
from tests.support.gateway import gateway_config, sim_station

FW = "https://fw.example/sim-2.0.0.bin"
TICK_S = 0.2  # the rollout worker's round in tests


@asynccontextmanager
async def sim_fleet(
    gw: Gateway, prefix: str, versions: Sequence[str]
) -> AsyncIterator[list[SimulatedStation]]:
    """One simulated station per version given, each with a prefix of its own."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(sim_station(gw, f"{prefix}{n}-", version))
            for n, version in enumerate(versions)
        ]


@asynccontextmanager
async def fleet(
    broker: EmbeddedBroker, db_url: str, topics: Topics, prefix: str, versions: Sequence[str]
) -> AsyncIterator[list[SimulatedStation]]:
    """A gateway and one simulated station per version on it."""
    async with (
        Gateway(gateway_config(broker, db_url, topics)) as gw,
        sim_fleet(gw, prefix, versions) as stations,
    ):
        yield stations


@asynccontextmanager
async def rollout_api(
    broker: EmbeddedBroker, db_url: str, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its rollout worker on a short round."""
    async with api_client(
        db_url, broker.bootstrap, topics=topics, firmware_rollout_tick_s=TICK_S
    ) as client:
        yield client


async def create_rollout(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/firmware-rollouts", json=body, headers=auth(key))
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"/v1/firmware-rollouts/{resp.json()['rollout_id']}"
    created: dict[str, Any] = resp.json()
    return created


async def rollout_until(
    client: httpx.AsyncClient,
    key: str,
    rollout_id: str,
    done: Callable[[dict[str, Any]], bool],
    within: float = 60,
) -> dict[str, Any]:
    """The rollout (GET) once ``done`` holds; fails with the last one after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        resp = await client.get(f"/v1/firmware-rollouts/{rollout_id}", headers=auth(key))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout not there within {within} s: {body}")
        await asyncio.sleep(0.1)


def status_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda rollout: rollout["status"] == status


def commands_per_station(db_url: str, cps: Sequence[str]) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT charge_point_id, count(*) FROM commands "
            "WHERE action = 'UpdateFirmware' AND charge_point_id = ANY(%s) GROUP BY 1",
            (list(cps),),
        ).fetchall()
    return {str(cp): int(n) for cp, n in rows}


def updates_received(station: SimulatedStation) -> int:
    return sum(1 for action, _ in station.state.received if action == "UpdateFirmware")
