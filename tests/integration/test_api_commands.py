"""Remote commands from the API end to end, real broker, database, gateway and simulated
stations (OCPP 1.6 and 2.0.1): POST -> ``commands`` row -> ``ocpp.commands`` -> gateway
-> station -> outcome, read back with ``?wait``, the list and the event stream;
idempotency keys, rejections, offline and unknown stations, and a broker the API cannot
reach (the gateway publishes the command later)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx
import psycopg
import pytest

from bus.admin import read_topic
from bus.commands import decode_command
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker, free_port
from ingest.gateway.server import Gateway
from ingest.simulator.station import SimulatedStation
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth, insert_session, sse_events
from tests.support.api_commands import keys, outcome, post
from tests.support.gateway import SIM_TAG, STATION_PASSWORD, gateway_config, sim_station
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

V16_PROFILE = {
    "connectorId": 1,
    "csChargingProfiles": {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.3}],
        },
    },
}


def messages_for(broker: EmbeddedBroker, topics: Topics, command_id: str) -> int:
    return sum(
        1
        for m in read_topic(broker.bootstrap, topics.ocpp_commands)
        if str(decode_command(m.value()).command_id) == command_id
    )


async def _remote_start_and_stop(
    client: httpx.AsyncClient, key: str, station: SimulatedStation, version: str, db_url: str
) -> None:
    cp = station.cp_id
    resp = await post(client, key, cp, "remote-start", {"id_tag": SIM_TAG, "connector_id": 1})
    assert resp.json()["status"] == "pending"
    # The stream, opened while the command is on its way: every step once, in order,
    # then it closes by itself.
    events = await client.get(f"/v1/commands/{resp.json()['command_id']}/events", headers=auth(key))
    assert events.status_code == 200
    assert events.headers["content-type"].startswith("text/event-stream")
    steps = sse_events(events.text)
    assert [name for name, _ in steps] == ["pending", "sent", "accepted"]
    assert steps[-1][1]["command"]["status"] == "accepted"
    started = await outcome(client, key, resp)
    assert started["status"] == "accepted", started
    assert started["ocpp_version"] == version
    if version == "1.6":
        assert started["action"] == "RemoteStartTransaction"
        assert started["payload"] == {"idTag": SIM_TAG, "connectorId": 1}
    else:
        assert started["action"] == "RequestStartTransaction"
        remote_start_id = started["payload"]["remoteStartId"]
        with psycopg.connect(db_url) as conn:
            stored = conn.execute(
                "SELECT remote_start_id FROM commands WHERE command_id = %s",
                (started["command_id"],),
            ).fetchone()
        assert stored == (remote_start_id,)
    # Waiting on a final command answers at once.
    again = await client.get(
        f"/v1/commands/{started['command_id']}", params={"wait": 30}, headers=auth(key)
    )
    # (The transaction the start produced may have been linked meanwhile.)
    link = {"transaction_id", "session_id"}
    assert {k: v for k, v in again.json().items() if k not in link} == {
        k: v for k, v in started.items() if k not in link
    }

    running = await apoll(
        lambda: station.state.running.get(1), lambda tx: tx is not None, 20, "a transaction"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = insert_session(
            conn, charge_point_id=cp, transaction_id=str(running), status="active"
        )
    resp = await post(client, key, cp, "remote-stop", {"session_id": str(session["session_id"])})
    stopped = await outcome(client, key, resp)
    assert stopped["status"] == "accepted", stopped
    assert str(stopped["payload"]["transactionId"]) == str(running)


async def _idempotent_retry(
    client: httpx.AsyncClient, key: str, cp: str, broker: EmbeddedBroker, topics: Topics
) -> None:
    body = {"message": "Heartbeat"}
    first = await post(client, key, cp, "trigger-message", body, **{"Idempotency-Key": "k-1"})
    again = await post(client, key, cp, "trigger-message", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["command_id"] == first.json()["command_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (await outcome(client, key, again))["status"] == "accepted"
    assert messages_for(broker, topics, first.json()["command_id"]) == 1
    other = await post(
        client,
        key,
        cp,
        "trigger-message",
        {"message": "BootNotification"},
        **{"Idempotency-Key": "k-1"},
    )
    problem = assert_problem(other, 422)
    assert problem["type"] == "urn:chargeflow:problem:idempotency-key-reused"
    # Two retries at the same time: one command, one message.
    racing = await asyncio.gather(
        *(
            post(client, key, cp, "trigger-message", body, **{"Idempotency-Key": "k-2"})
            for _ in range(4)
        )
    )
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["command_id"] for r in racing}) == 1
    assert (await outcome(client, key, racing[0]))["status"] == "accepted"
    assert messages_for(broker, topics, racing[0].json()["command_id"]) == 1


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_commands_from_the_api_reach_the_station_and_report_the_outcome(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    key = keys(clean_db)["operator"]
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, f"API{version}-", version) as station,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        cp = station.cp_id
        await _remote_start_and_stop(client, key, station, version, clean_db)
        await _idempotent_retry(client, key, cp, broker, topics)
        # Numbers keep their decimal text (float 7400.3 would fail multipleOf 0.1).
        raw: dict[str, Any] = {"action": "SetChargingProfile", "payload": V16_PROFILE}
        if version == "2.0.1":
            raw = {
                "action": "GetBaseReport",
                "payload": {"requestId": 5, "reportBase": "FullInventory"},
            }
        sent_raw = await outcome(client, key, await post(client, key, cp, "raw", raw))
        assert sent_raw["status"] == "accepted", sent_raw
        assert sent_raw["payload"] == raw["payload"]
        if version == "1.6":
            with psycopg.connect(clean_db) as conn:
                text = conn.execute(
                    "SELECT payload::text FROM commands WHERE command_id = %s",
                    (sent_raw["command_id"],),
                ).fetchone()
            assert text is not None
            assert '"limit": 7400.3' in text[0]
        bad = await post(client, key, cp, "raw", {"action": "Reset", "payload": {"type": "Warm"}})
        assert "invalid Reset payload" in assert_problem(bad, 422)["detail"]
        listed = await client.get(
            "/v1/commands",
            params={"station": cp, "status": "accepted", "limit": 2},
            headers=auth(key),
        )
        assert listed.status_code == 200
        page = listed.json()
        assert len(page["items"]) == 2
        assert page["next_cursor"]
        rest = await client.get(
            "/v1/commands",
            params={"station": cp, "status": "accepted", "cursor": page["next_cursor"]},
            headers=auth(key),
        )
        seen = [c["command_id"] for c in page["items"] + rest.json()["items"]]
        assert len(seen) == len(set(seen)) == 5  # start, stop, 2 triggers, raw
        reset = await outcome(client, key, await post(client, key, cp, "reset", {"type": "soft"}))
        assert reset["status"] == "accepted"
        assert reset["payload"] == {"type": "Soft" if version == "1.6" else "OnIdle"}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_rejected_offline_unknown_and_forbidden(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, version: str
) -> None:
    roles = keys(clean_db)
    key = roles["operator"]
    behaviour = {"Reset": "reject"}
    async with (
        Gateway(gateway_config(broker, clean_db, topics)) as gw,
        sim_station(gw, f"APIREJ{version}-", version, command_behaviour=behaviour) as station,
        api_client(clean_db, broker.bootstrap, topics=topics) as client,
    ):
        rejected = await outcome(
            client, key, await post(client, key, station.cp_id, "reset", {"type": "hard"})
        )
        assert rejected["status"] == "rejected"
        assert rejected["response"] == {"status": "Rejected"}
        assert rejected["payload"] == {"type": "Hard" if version == "1.6" else "Immediate"}

        # Known version (it connected once, or the registry says), not connected now.
        await asyncio.to_thread(provision_station, clean_db, "API-GONE", password=STATION_PASSWORD)
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute(
                "UPDATE stations SET ocpp_version = %s WHERE charge_point_id = 'API-GONE'",
                (version,),
            )
        resp = await post(client, key, "API-GONE", "unlock-connector", {"connector_id": 1})
        offline = await outcome(client, key, resp)
        assert offline["status"] == "offline"
        assert offline["sent_at"] is None
        events = await client.get(f"/v1/commands/{offline['command_id']}/events", headers=auth(key))
        assert [name for name, _ in sse_events(events.text)] == ["pending", "offline"]

        # Held by another live replica (that never sends it): pending; `wait` gives up
        # after its N seconds and says so.
        await asyncio.to_thread(provision_station, clean_db, "API-HELD", password=STATION_PASSWORD)
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("INSERT INTO gateways (gateway_id) VALUES ('gw-elsewhere')")
            conn.execute(
                "INSERT INTO station_connections (charge_point_id, gateway_id)"
                " VALUES ('API-HELD', 'gw-elsewhere')"
            )
            conn.execute(
                "UPDATE stations SET ocpp_version = %s WHERE charge_point_id = 'API-HELD'",
                (version,),
            )
        held = await post(client, key, "API-HELD", "reset", {"type": "soft"})
        assert held.status_code == 202
        started = time.monotonic()
        waited = await client.get(held.headers["location"], params={"wait": 1}, headers=auth(key))
        assert 1 <= time.monotonic() - started < 5
        assert waited.json()["status"] == "pending"

        await asyncio.to_thread(provision_station, clean_db, "API-NEW", password=STATION_PASSWORD)
        never = await post(client, key, "API-NEW", "reset", {"type": "soft"})
        assert assert_problem(never, 409)["type"] == "urn:chargeflow:problem:ocpp-version-unknown"
        assert_problem(await post(client, key, "API-NONE", "reset", {"type": "soft"}), 404)
        assert_problem(
            await post(client, roles["billing"], station.cp_id, "reset", {"type": "soft"}), 403
        )
        assert_problem(await client.get(f"/v1/commands/{uuid.uuid4()}", headers=auth(key)), 404)


async def test_a_command_the_broker_did_not_take_is_published_by_the_gateway(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """The API's broker is unreachable: 202 pending anyway; a gateway heartbeat publishes
    the row and the station answers."""
    key = keys(clean_db)["operator"]
    config = replace(gateway_config(broker, clean_db, topics), replica_heartbeat_s=0.5)
    async with (
        Gateway(config) as gw,
        sim_station(gw, "APIQ-", "1.6") as station,
        api_client(clean_db, f"127.0.0.1:{free_port()}", topics=topics) as client,
    ):
        resp = await post(
            client, key, station.cp_id, "change-availability", {"availability": "operative"}
        )
        assert resp.status_code == 202
        assert resp.json()["status"] == "pending"
        final = await outcome(client, key, resp)
        assert final["status"] == "accepted", final
        assert final["payload"] == {"connectorId": 0, "type": "Operative"}
        with psycopg.connect(clean_db) as conn:
            row = conn.execute(
                "SELECT published_at FROM commands WHERE command_id = %s", (final["command_id"],)
            ).fetchone()
        assert row is not None
        assert row[0] is not None
        assert messages_for(broker, topics, final["command_id"]) == 1
