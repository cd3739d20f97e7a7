"""A station's OCPP message history end to end, real broker, database, gateway and a
simulated station: the station's CALLs (through ``ocpp.events`` and the messages flow)
and the commands sent to it (the ``commands`` rows) in one history, newest first, with
filters, pagination, masked secrets, replays that write nothing twice, retention in
plain PostgreSQL, and bad filters answered 422."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from bytewax.testing import run_main

from bus.envelope import Envelope, Kind, encode_envelope, new_message_id
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.messages.config import MessagesFlowConfig
from flows.messages.dataflow import build_flow
from ingest.gateway.server import Gateway
from store.messages import MessageRow, write_messages
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth
from tests.support.flows import publish
from tests.support.gateway import STATION_PASSWORD, envelopes, gateway_config, sim_station

pytestmark = pytest.mark.integration

AUTH_KEY = "SECRET-AUTH-KEY-0123456789"
STATION_SECRET = "station-said-hunter2-hunter2"


def flow_config(
    broker: EmbeddedBroker, db_url: str, topics: Topics, **kw: Any
) -> MessagesFlowConfig:
    return MessagesFlowConfig(
        brokers=[broker.bootstrap], database_url=db_url, topics=topics, tail=False, **kw
    )


def stored(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT message_id, action, payload::text, response::text FROM ocpp_messages"
            " ORDER BY message_id"
        ).fetchall()


async def history(
    client: httpx.AsyncClient, key: str, cp: str, **params: Any
) -> list[dict[str, Any]]:
    """Every page of the history (``limit`` per page), in order."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get(f"/v1/stations/{cp}/messages", params=query, headers=auth(key))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def command(client: httpx.AsyncClient, key: str, cp: str, action: str, body: Any) -> str:
    resp = await client.post(f"/v1/stations/{cp}/commands/{action}", json=body, headers=auth(key))
    assert resp.status_code == 202, resp.text
    final = await client.get(resp.headers["location"], params={"wait": 20}, headers=auth(key))
    assert final.json()["status"] not in ("pending", "sent"), final.text
    return str(final.json()["command_id"])


def secret_call(cp: str) -> Envelope:
    now = datetime.now(UTC)
    return Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=now,
        measured_at=now,
        kind=Kind.OCPP_CALL,
        action="DataTransfer",
        ocpp_version="1.6",
        unique_id="u-secret",
        payload={"vendorId": "acme", "data": {"password": STATION_SECRET, "n": 1}},
        response={"status": "Accepted"},
    )


async def _send_commands(client: httpx.AsyncClient, keys: dict[str, str], cp: str) -> set[str]:
    """A trigger and a configuration change carrying a secret; their command ids."""
    trigger = await command(
        client, keys["operator"], cp, "trigger-message", {"message": "Heartbeat"}
    )
    change = {
        "action": "ChangeConfiguration",
        "payload": {"key": "AuthorizationKey", "value": AUTH_KEY},
    }
    return {trigger, await command(client, keys["admin"], cp, "raw", change)}


def _assert_both_directions(every: list[dict[str, Any]], commands: set[str], rows: int) -> None:
    assert len(every) == len({m["message_id"] for m in every}) == rows + 2
    times = [m["at"] for m in every]
    assert times == sorted(times, reverse=True)
    sent = [m for m in every if m["direction"] == "csms_to_station"]
    assert {m["message_id"] for m in sent} == commands
    change = next(m for m in sent if m["action"] == "ChangeConfiguration")
    assert change["payload"] == {"key": "AuthorizationKey", "value": "***"}
    assert change["status"] in ("accepted", "rejected")
    assert change["response"] is not None
    boot = next(m for m in every if m["action"] == "BootNotification")
    assert boot["direction"] == "station_to_csms"
    assert boot["response"]["status"] == "Accepted"
    assert boot["payload"]["chargePointVendor"]
    text = str(every)
    assert AUTH_KEY not in text
    assert STATION_SECRET not in text


async def _assert_filters(
    client: httpx.AsyncClient, key: str, cp: str, every: list[dict[str, Any]], rows: int
) -> None:
    only = await history(client, key, cp, action=["BootNotification", "ChangeConfiguration"])
    assert sorted(m["action"] for m in only) == ["BootNotification", "ChangeConfiguration"]
    inbound = await history(client, key, cp, direction="station_to_csms")
    assert len(inbound) == rows
    since, until = every[-2]["at"], every[0]["at"]
    window = await history(client, key, cp, since=since, until=until)
    at = datetime.fromisoformat
    expected = [m["message_id"] for m in every if at(since) <= at(m["at"]) < at(until)]
    assert expected
    assert [m["message_id"] for m in window] == expected


async def test_the_history_shows_station_calls_and_commands_newest_first(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, keys: dict[str, str]
) -> None:
    config = flow_config(broker, clean_db, topics)
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, "MSG-", "1.6") as station,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        cp = station.cp_id
        commands = await _send_commands(client, keys, cp)
        call = encode_envelope(secret_call(cp))
        publish(broker.bootstrap, topics.ocpp_events, [(cp.encode(), call)])
        await asyncio.to_thread(run_main, build_flow(config))
        rows = stored(clean_db)
        actions = {r[1] for r in rows}
        assert {"BootNotification", "StatusNotification", "Heartbeat", "DataTransfer"} <= actions
        assert STATION_SECRET not in str(rows)
        every = await history(client, keys["maintenance"], cp, limit=3)
        _assert_both_directions(every, commands, len(rows))
        await _assert_filters(client, keys["maintenance"], cp, every, len(rows))

    # The station is gone (the topic stays as it is): a replay from offset 0 writes each
    # CALL on the topic once, the earlier ones unchanged.
    await asyncio.to_thread(run_main, build_flow(config))
    await asyncio.to_thread(run_main, build_flow(config))
    on_topic = {e.message_id for e in envelopes(broker, topics.ocpp_events)}
    after = stored(clean_db)
    assert [r[0] for r in after] == sorted(on_topic)
    assert set(rows) <= set(after)


async def test_retention_deletes_old_rows_in_plain_postgresql(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    now = datetime.now(UTC)
    old = MessageRow("old-1", "RET-1", now - timedelta(days=31), "Heartbeat", "1.6", "u1", {}, {})
    kept = MessageRow("new-1", "RET-1", now - timedelta(days=29), "Heartbeat", "1.6", "u2", {}, {})
    with psycopg.connect(clean_db, autocommit=True) as conn:
        mode = conn.execute(
            "SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"
        ).fetchone()
        if mode != ("postgresql",):
            pytest.skip("plain PostgreSQL only (TimescaleDB: the retention policy drops chunks)")
        write_messages(conn, [old, kept])
    publish(
        broker.bootstrap, topics.ocpp_events, [(b"RET-1", encode_envelope(secret_call("RET-1")))]
    )
    await asyncio.to_thread(
        run_main, build_flow(flow_config(broker, clean_db, topics, retention_days=30))
    )
    ids = {r[0] for r in stored(clean_db)}
    assert "old-1" not in ids
    assert "new-1" in ids
    assert len(ids) >= 2  # and what the flow wrote


async def test_bad_filters_unknown_stations_and_roles(clean_db: str, keys: dict[str, str]) -> None:
    await asyncio.to_thread(provision_station, clean_db, "MSG-BAD", password=STATION_PASSWORD)
    url = "/v1/stations/MSG-BAD/messages"
    async with api_client(clean_db) as client:
        key = auth(keys["operator"])
        ok = await client.get(url, headers=key)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"items": [], "next_cursor": None}
        for params in (
            {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            {"since": "yesterday"},
            {"until": "2026-01-01T00:00:00"},
            {"cursor": "not-a-cursor"},
            {"action": "Boot Notification"},
            {"direction": "sideways"},
            {"limit": 0},
            {"limit": 501},
        ):
            problem = assert_problem(await client.get(url, params=params, headers=key), 422)
            assert problem["errors"], params
        assert_problem(await client.get("/v1/stations/MSG-NONE/messages", headers=key), 404)
        assert_problem(await client.get(url, headers=auth(keys["billing"])), 403)
        assert_problem(await client.get(url), 401)
        for role in ("maintenance", "admin"):
            assert (await client.get(url, headers=auth(keys[role]))).status_code == 200


async def test_a_page_walk_while_the_history_grows(clean_db: str, keys: dict[str, str]) -> None:
    """A page walk over a history growing meanwhile neither repeats nor skips rows
    older than the cursor."""
    await asyncio.to_thread(provision_station, clean_db, "MSG-GROW", password=STATION_PASSWORD)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        MessageRow(
            f"g-{i}", "MSG-GROW", t0 + timedelta(seconds=i // 2), "Heartbeat", "1.6", None, {}, {}
        )
        for i in range(7)
    ]
    with psycopg.connect(clean_db, autocommit=True) as conn:
        write_messages(conn, rows)
    async with api_client(clean_db) as client:
        key = keys["operator"]
        first = await client.get(
            "/v1/stations/MSG-GROW/messages", params={"limit": 4}, headers=auth(key)
        )
        with psycopg.connect(clean_db, autocommit=True) as conn:
            write_messages(
                conn,
                [
                    MessageRow(
                        "g-new",
                        "MSG-GROW",
                        t0 + timedelta(days=1),
                        "Heartbeat",
                        "1.6",
                        None,
                        {},
                        {},
                    )
                ],
            )
        rest = await client.get(
            "/v1/stations/MSG-GROW/messages",
            params={"limit": 4, "cursor": first.json()["next_cursor"]},
            headers=auth(key),
        )
        seen = [m["message_id"] for m in first.json()["items"] + rest.json()["items"]]
        assert sorted(seen) == sorted(r.message_id for r in rows)
        assert rest.json()["next_cursor"] is None
        got = await client.get("/v1/stations/MSG-GROW/messages", headers=auth(key))
        assert got.json()["items"][0]["message_id"] == "g-new"
