"""What the registry API writes, the real gateway enforces over real websockets: a
provisioned station logs in with the password the API answered; after a new password
the old one is refused and the new one accepted; a decommissioned station is refused
(its row and history stay); a token blocked through the API is answered Blocked once
the gateway's id tag cache (``id_tag_cache_ttl_s``) has expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import connect

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.sites import upsert_site
from tests.support.api import api_client, assert_problem, auth
from tests.support.gateway import basic_auth, gateway_config, rpc
from tests.support.polling import apoll_async
from tests.support.registry import created, id_token_body, login_status, station_body

pytestmark = pytest.mark.integration

CACHE_TTL_S = 0.5


@pytest.fixture
async def gateway(broker: EmbeddedBroker, clean_db: str, topics: Topics) -> AsyncIterator[Gateway]:
    config = gateway_config(broker, clean_db, topics, id_tag_cache_ttl_s=CACHE_TTL_S)
    async with Gateway(config) as gw:
        yield gw


async def test_new_password_replaces_the_old_one_at_the_gateway(
    gateway: Gateway, clean_db: str, keys: dict[str, str]
) -> None:
    upsert_site(clean_db, "S-G", "G", None)
    async with api_client(clean_db) as client:
        first = await created(
            client, keys["operator"], "/v1/stations", station_body("CP-G1", site_id="S-G")
        )
        old = first["password"]
        assert await login_status(gateway, "CP-G1", old) == 101
        assert await login_status(gateway, "CP-G1", "not-the-password-1") == 401
        rotated = await client.post("/v1/stations/CP-G1/password", headers=auth(keys["admin"]))
        assert rotated.status_code == 200, rotated.text
        assert rotated.headers["cache-control"] == "no-store"
        new = rotated.json()["password"]
        assert new != old
        # The old one was verified (and remembered) a moment ago: still refused now.
        assert await login_status(gateway, "CP-G1", old) == 401
        assert await login_status(gateway, "CP-G1", new) == 101
        assert await login_status(gateway, "CP-G1", new) == 101  # the remembered login


async def test_decommissioned_station_is_refused_and_its_history_kept(
    gateway: Gateway, clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    async with api_client(clean_db) as client:
        password = (await created(client, keys["operator"], "/v1/stations", station_body("CP-G2")))[
            "password"
        ]
        assert await login_status(gateway, "CP-G2", password) == 101
        gone = await client.delete("/v1/stations/CP-G2", headers=auth(keys["admin"]))
        assert gone.status_code == 200, gone.text
        assert gone.json()["status"] == "decommissioned"
        assert gone.json()["decommissioned_at"] is not None
        assert await login_status(gateway, "CP-G2", password) == 404
        # Still readable, not re-creatable, no new password.
        kept = await client.get("/v1/stations/CP-G2", headers=auth(keys["operator"]))
        assert kept.json()["status"] == "decommissioned"
        again = await client.post(
            "/v1/stations", json=station_body("CP-G2"), headers=auth(keys["operator"])
        )
        assert_problem(again, 409)
        rotate = await client.post("/v1/stations/CP-G2/password", headers=auth(keys["admin"]))
        assert_problem(rotate, 409)
        assert_problem(await client.delete("/v1/stations/NOPE", headers=auth(keys["admin"])), 404)
    assert (
        db.execute("SELECT count(*) FROM stations WHERE charge_point_id = 'CP-G2'").fetchall()[0][0]
        == 1
    )


async def test_blocked_token_is_refused_by_the_gateway(
    gateway: Gateway, clean_db: str, keys: dict[str, str]
) -> None:
    async with api_client(clean_db) as client:
        password = (await created(client, keys["operator"], "/v1/stations", station_body("CP-G3")))[
            "password"
        ]
        await created(
            client, keys["operator"], "/v1/id-tags", id_token_body("RFID-G3", customer_ref="ACME")
        )
        async with connect(
            f"{gateway.url}/CP-G3",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP-G3", password),
        ) as ws:
            answer = await rpc(ws, "Authorize", {"idTag": "RFID-G3"})
            assert answer[2]["idTagInfo"]["status"] == "Accepted"
            blocked = await client.patch(
                "/v1/id-tags/RFID-G3", json={"status": "Blocked"}, headers=auth(keys["operator"])
            )
            assert blocked.status_code == 200, blocked.text

            async def status() -> str:
                frame = await rpc(ws, "Authorize", {"idTag": "RFID-G3"})
                return str(frame[2]["idTagInfo"]["status"])

            assert await apoll_async(status, lambda s: s == "Blocked", 10, "Blocked") == "Blocked"
            await client.delete("/v1/id-tags/RFID-G3", headers=auth(keys["admin"]))
            assert await apoll_async(status, lambda s: s == "Invalid", 10, "Invalid") == "Invalid"
