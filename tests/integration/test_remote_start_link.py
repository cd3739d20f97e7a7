"""A remote start tells, once known, the transaction and session it produced (ADR
0010), end to end on the real broker, database, gateway, sessions flow and API:
simulated 1.6 and 2.0.1 stations started from the API show accepted, then the
transaction id, then the session id (``?wait_for=session``, the event stream, the
session's ``remote_start_command_id``); on a 1.6 station played over a real websocket,
the driver's own start with another idTag is not linked, and a start whose timestamp
lies after the window is not linked either."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from bytewax.testing import run_main
from websockets.asyncio.client import ClientConnection

from bus.times import format_rfc3339, utc_now
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from flows.sessions.rows import session_id_for
from ingest.gateway.server import Gateway
from store.api_keys import create_api_key
from store.id_tokens import add_id_tag
from tests.support.api import api_client, assert_problem, auth, sse_events
from tests.support.gateway import (
    SIM_TAG,
    gateway_config,
    open_station,
    open_v201,
    rpc,
    sim_station,
)
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

WINDOW_S = 60.0


async def remote_start(
    client: httpx.AsyncClient, key: str, cp: str, body: dict[str, Any]
) -> dict[str, Any]:
    resp = await client.post(
        f"/v1/stations/{cp}/commands/remote-start", json=body, headers=auth(key)
    )
    assert resp.status_code == 202, resp.text
    created: dict[str, Any] = resp.json()
    assert (created["transaction_id"], created["session_id"]) == (None, None)
    return created


async def command(client: httpx.AsyncClient, key: str, command_id: str, **params: Any) -> Any:
    resp = await client.get(f"/v1/commands/{command_id}", params=params, headers=auth(key))
    assert resp.status_code == 200, resp.text
    return resp.json()


def run_sessions_flow(broker: EmbeddedBroker, database_url: str, topics: Topics) -> None:
    config = SessionsFlowConfig(
        brokers=[broker.bootstrap], database_url=database_url, topics=topics, tail=False
    )
    run_main(build_flow(config))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_remote_start_shows_accepted_then_its_transaction_then_its_session(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = create_api_key(clean_db, "link-operator", "operator")
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        # Simulated time = wall time: the 1.6 window is on the station's timestamps.
        sim_station(gw, f"LINK{version}-", version, time_scale=1) as station,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        cp = station.cp_id
        created = await remote_start(client, key, cp, {"id_tag": SIM_TAG, "connector_id": 1})
        cid = created["command_id"]
        accepted = await command(client, key, cid, wait=20)
        assert accepted["status"] == "accepted", accepted
        running = await apoll(
            lambda: station.state.running.get(1), lambda tx: tx is not None, 20, "a transaction"
        )
        # The gateway links the start before it answers it, so before the station
        # knows the transaction.
        linked = await command(client, key, cid)
        assert linked["transaction_id"] == str(running)
        assert linked["session_id"] is None  # the sessions flow has not stored it yet
        # Waiting for the session gives up after N s while there is none.
        waited = await command(client, key, cid, wait=0.3, wait_for="session")
        assert waited["session_id"] is None

        await asyncio.to_thread(run_sessions_flow, broker, clean_db, topics)
        done = await command(client, key, cid, wait=20, wait_for="session")
        session_id = str(session_id_for(cp, str(running)))
        assert (done["transaction_id"], done["session_id"]) == (str(running), session_id)

        events = await client.get(
            f"/v1/commands/{cid}/events", params={"wait_for": "session"}, headers=auth(key)
        )
        steps = sse_events(events.text)
        assert [name for name, _ in steps] == [
            "pending",
            "sent",
            "accepted",
            "transaction",
            "session",
        ]
        assert steps[-1][1]["command"]["session_id"] == session_id

        session = await client.get(f"/v1/sessions/{session_id}", headers=auth(key))
        assert session.status_code == 200, session.text
        assert session.json()["remote_start_command_id"] == cid
        listed = await client.get("/v1/commands", params={"station": cp}, headers=auth(key))
        assert [c["session_id"] for c in listed.json()["items"]] == [session_id]
        bad = await client.get(
            f"/v1/commands/{cid}", params={"wait_for": "forever"}, headers=auth(key)
        )
        assert_problem(bad, 422)


async def answer_remote_start(ws: ClientConnection) -> dict[str, Any]:
    """Play the station: the gateway's RemoteStartTransaction, answered Accepted."""
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await ws.recv())
            if frame[0] == 2 and frame[2] == "RemoteStartTransaction":
                await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                payload: dict[str, Any] = frame[3]
                return payload


async def start_transaction(
    ws: ClientConnection, connector_id: int, id_tag: str, offset_s: float = 0
) -> str:
    """A StartTransaction stamped ``offset_s`` from now (the station's clock); the
    gateway's transaction id. The link is decided before the gateway answers."""
    stamp = format_rfc3339(utc_now() + timedelta(seconds=offset_s))
    answer = await rpc(
        ws,
        "StartTransaction",
        {"connectorId": connector_id, "idTag": id_tag, "meterStart": 0, "timestamp": stamp},
    )
    assert answer[0] == 3, answer
    return str(answer[2]["transactionId"])


async def accepted_remote_start(
    client: httpx.AsyncClient, key: str, ws: ClientConnection, cp: str, tag: str
) -> str:
    created = await remote_start(client, key, cp, {"id_tag": tag})
    sent, answered = await asyncio.gather(
        answer_remote_start(ws), command(client, key, created["command_id"], wait=20)
    )
    assert sent == {"idTag": tag}
    assert answered["status"] == "accepted", answered
    return str(created["command_id"])


async def test_a_1_6_start_with_another_tag_or_after_the_window_is_not_linked(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    key = create_api_key(clean_db, "link-operator", "operator")
    for tag in ("REMOTE-TAG", "DRIVER-OWN", "LATE-TAG"):
        await asyncio.to_thread(add_id_tag, clean_db, tag)
    config = gateway_config(broker, clean_db, topics, remote_start_window_s=WINDOW_S)
    async with (
        Gateway(config) as gw,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        ws = await open_station(gw, "LINK-WS16")
        try:
            boot = await rpc(
                ws, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
            )
            assert boot[0] == 3, boot
            # No connector named: any connector, but the same idTag.
            cid = await accepted_remote_start(client, key, ws, "LINK-WS16", "REMOTE-TAG")
            await start_transaction(ws, 1, "DRIVER-OWN")
            assert (await command(client, key, cid))["transaction_id"] is None
            remote_tx = await start_transaction(ws, 2, "REMOTE-TAG")
            assert (await command(client, key, cid))["transaction_id"] == remote_tx
            # Linked once: the next start with the tag stays the station's own.
            await start_transaction(ws, 3, "REMOTE-TAG")
            assert (await command(client, key, cid))["transaction_id"] == remote_tx

            late = await accepted_remote_start(client, key, ws, "LINK-WS16", "LATE-TAG")
            await start_transaction(ws, 1, "LATE-TAG", offset_s=WINDOW_S + 30)
            assert (await command(client, key, late))["transaction_id"] is None
            in_time = await start_transaction(ws, 1, "LATE-TAG", offset_s=1)
            assert (await command(client, key, late))["transaction_id"] == in_time
        finally:
            await ws.close()
    with psycopg.connect(clean_db) as conn:
        linked = conn.execute(
            "SELECT count(*) FROM commands WHERE transaction_id IS NOT NULL"
        ).fetchone()
    assert linked == (2,)


async def test_a_2_0_1_start_answered_with_the_running_transaction_is_linked(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    key = create_api_key(clean_db, "link-operator", "operator")
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        ws = await open_v201(gw, "LINK-WS201")
        try:
            station = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
            assert (await rpc(ws, "BootNotification", station))[0] == 3
            created = await remote_start(client, key, "LINK-WS201", {"id_tag": "CABLE-FIRST"})
            async with asyncio.timeout(20):
                frame = json.loads(await ws.recv())
                while frame[0] != 2:  # only the gateway's CALL
                    frame = json.loads(await ws.recv())
            assert frame[2] == "RequestStartTransaction", frame
            assert frame[3]["remoteStartId"] == created["payload"]["remoteStartId"]
            answer = {"status": "Accepted", "transactionId": "TX-RUNNING"}
            await ws.send(json.dumps([3, frame[1], answer]))
            linked = await apoll(
                lambda: stored_link(clean_db, created["command_id"]),
                lambda tx: tx is not None,
                20,
                "the link of the answer",
            )
            assert linked == "TX-RUNNING"
            shown = await command(client, key, created["command_id"])
            assert (shown["status"], shown["transaction_id"]) == ("accepted", "TX-RUNNING")
        finally:
            await ws.close()


def stored_link(database_url: str, command_id: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT transaction_id FROM commands WHERE command_id = %s", (command_id,)
        ).fetchone()
    return None if row is None else row[0]
