"""Remote commands through the API in tests: API keys for the command roles, a gateway
with one simulated station and an API client, the POST of a typed or raw command, and
the command once final (``GET /v1/commands/{id}?wait``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from ingest.simulator.station import SimulatedStation
from store.api_keys import create_api_key
from tests.support.api import api_client, auth
from tests.support.gateway import gateway_config, sim_station

FINAL = {"accepted", "rejected", "failed", "timed_out", "expired", "offline"}


def keys(database_url: str) -> dict[str, str]:
    """An operator's and a billing API key (the latter may not send commands)."""
    return {
        role: create_api_key(database_url, f"cmd-{role}", role) for role in ("operator", "billing")
    }


async def post(
    client: httpx.AsyncClient, key: str, cp: str, action: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/stations/{cp}/commands/{action}", json=body, headers={**auth(key), **headers}
    )


async def outcome(client: httpx.AsyncClient, key: str, resp: httpx.Response) -> dict[str, Any]:
    """The command behind a 202, once final (``?wait``)."""
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    assert location == f"/v1/commands/{resp.json()['command_id']}"
    final = await client.get(location, params={"wait": 20}, headers=auth(key))
    assert final.status_code == 200, final.text
    body: dict[str, Any] = final.json()
    assert body["status"] in FINAL, body
    return body


async def sent(
    client: httpx.AsyncClient, key: str, cp: str, action: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST a command and wait for its outcome."""
    return await outcome(client, key, await post(client, key, cp, action, body))


@asynccontextmanager
async def station_and_api(
    broker: EmbeddedBroker, db_url: str, topics: Topics, cp_prefix: str, version: str
) -> AsyncIterator[tuple[SimulatedStation, httpx.AsyncClient]]:
    """A gateway, one simulated station of ``version`` connected to it, an API client."""
    async with (
        Gateway(gateway_config(broker, db_url, topics)) as gw,
        sim_station(gw, cp_prefix, version) as station,
        api_client(db_url, broker.bootstrap, topics=topics) as client,
    ):
        yield station, client
