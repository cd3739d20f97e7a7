"""The registry API under test: request bodies (stations, sites, id tokens, meters) and
a station's login at a real gateway with a given password (accepted, or the HTTP status
of the refusal)."""

from __future__ import annotations

from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from ingest.gateway.server import Gateway
from tests.support.api import auth
from tests.support.gateway import basic_auth


def station_body(cp: str, **fields: Any) -> dict[str, Any]:
    return {"charge_point_id": cp, **fields}


def site_body(site_id: str, **fields: Any) -> dict[str, Any]:
    return {"site_id": site_id, "name": f"Site {site_id}", "time_zone": "Europe/Berlin", **fields}


def id_token_body(id_tag: str, **fields: Any) -> dict[str, Any]:
    return {"id_tag": id_tag, **fields}


def meter_body(meter_id: str, cp: str, **fields: Any) -> dict[str, Any]:
    return {"meter_id": meter_id, "charge_point_id": cp, **fields}


async def created(
    client: httpx.AsyncClient, key: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST a registry resource; asserts 201 and returns the answer."""
    resp = await client.post(path, json=body, headers=auth(key))
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


async def login_status(gw: Gateway, cp: str, password: str) -> int:
    """101 when the gateway lets the station in with ``password`` (the socket is closed
    again at once), else the HTTP status it refused the upgrade with."""
    try:
        ws = await connect(
            f"{gw.url}/{cp}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth(cp, password),
        )
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101
