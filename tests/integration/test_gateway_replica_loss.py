"""A gateway replica dies (SIGKILL): another replica publishes its stations offline;
a live replica whose connection rows were swept records them again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker, free_port
from ingest.gateway.server import Gateway
from tests.support.gateway import basic_auth, connection_events, gateway_config, provision, rpc
from tests.support.paths import ROOT
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


def holder(db: psycopg.Connection[Any], cp_id: str) -> str | None:
    row = db.execute(
        "SELECT gateway_id FROM station_connections WHERE charge_point_id = %s", (cp_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def _doomed_replica_env(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, port: int
) -> dict[str, str]:
    return {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events[: -len(Topics().ocpp_events)],
        "CHARGEFLOW_GATEWAY_PORT": str(port),
        "CHARGEFLOW_GATEWAY_ID": "gw-doomed",
        "CHARGEFLOW_GATEWAY_REPLICA_HEARTBEAT_S": "0.3",
    }


async def _connect_once_listening(
    doomed: asyncio.subprocess.Process, port: int
) -> ClientConnection:
    """CP-STRANDED's connection to the doomed replica, once it listens."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await connect(
                f"ws://127.0.0.1:{port}/ocpp/CP-STRANDED",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=basic_auth("CP-STRANDED"),
            )
        except OSError:
            assert doomed.returncode is None, "the doomed replica exited"
            assert time.monotonic() < deadline, "the doomed replica never listened"
            await asyncio.sleep(0.1)


async def _connect_to_a_replica_and_kill_it(
    env: dict[str, str], port: int, db: psycopg.Connection[Any]
) -> None:
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargeflow.cli",
        "gateway",
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ws = await _connect_once_listening(doomed, port)
        assert (await rpc(ws, "Heartbeat", {}))[0] == 3
        await apoll(
            lambda: holder(db, "CP-STRANDED"),
            lambda h: h == "gw-doomed",
            20,
            "the doomed replica's connection row",
        )
        doomed.send_signal(signal.SIGKILL)  # no clean shutdown: nothing settled
        await asyncio.wait_for(doomed.wait(), 20)
        await ws.close()
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await asyncio.wait_for(doomed.wait(), 20)


async def test_stations_of_a_killed_replica_go_offline_via_a_live_one(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    port = free_port()
    doomed_env = _doomed_replica_env(broker, clean_db, topics, port)
    cfg = gateway_config(
        broker,
        clean_db,
        topics,
        replica_heartbeat_s=0.3,
        replica_grace_s=2.0,
        gateway_id="gw-survivor",
    )
    async with Gateway(cfg) as survivor:
        await provision(survivor, "CP-STRANDED")
        await _connect_to_a_replica_and_kill_it(doomed_env, port, db)

        events = await apoll(
            lambda: connection_events(broker, topics, "CP-STRANDED"),
            lambda e: len(e) >= 2,
            30,
            "offline from the survivor",
        )
        assert [e.payload["state"] for e in events] == ["online", "offline"]
        assert events[1].payload == {
            "state": "offline",
            "reason": "gateway gw-doomed lost",
            "gateway_id": "gw-doomed",
        }
        assert holder(db, "CP-STRANDED") is None
        # Swept once: the next sweep finds nothing and publishes nothing.
        assert survivor.liveness is not None
        assert await survivor.liveness.sweep_orphans(cfg.replica_grace_s) == []
        assert len(connection_events(broker, topics, "CP-STRANDED")) == 2


async def test_a_live_replica_records_its_swept_connections_again(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    cfg = gateway_config(broker, clean_db, topics, replica_heartbeat_s=0.3, replica_grace_s=2.0)
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-KEPT")
        ws = await connect(
            f"{gw.url}/CP-KEPT",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP-KEPT"),
        )
        try:
            await apoll(
                lambda: holder(db, "CP-KEPT"),
                lambda h: h == gw.gateway_id,
                20,
                "the connection row",
            )
            # What another replica's sweep does when this one missed its heartbeats.
            db.execute("DELETE FROM station_connections WHERE charge_point_id = 'CP-KEPT'")
            await apoll(
                lambda: holder(db, "CP-KEPT"),
                lambda h: h == gw.gateway_id,
                20,
                "the row recorded again",
            )
            events = await apoll(
                lambda: connection_events(broker, topics, "CP-KEPT"),
                lambda e: len(e) >= 2,
                20,
                "online again",
            )
            assert events[-1].payload == {
                "state": "online",
                "reason": "connection re-registered",
                "gateway_id": gw.gateway_id,
            }
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3  # the socket was never touched
        finally:
            await ws.close()


async def test_a_replica_restarted_under_its_id_releases_what_the_dead_process_left(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    """A fixed replica id (compose's gateway-1, a pod's name) restarted after a crash: the
    rows the dead process left would name a replica that heartbeats again, so no sweep
    would take them. The new process publishes them offline before it serves."""
    cfg = gateway_config(broker, clean_db, topics, gateway_id="gw-fixed", replica_heartbeat_s=0.3)
    async with Gateway(cfg) as first:
        await provision(first, "CP-LEFT")
    # What a SIGKILLed process under the id leaves: its heartbeat and a station's row.
    db.execute(
        "INSERT INTO gateways (gateway_id, last_heartbeat) VALUES ('gw-fixed', now())"
        " ON CONFLICT (gateway_id) DO UPDATE SET last_heartbeat = now()"
    )
    db.execute(
        "INSERT INTO station_connections (charge_point_id, gateway_id, connected_at) "
        "VALUES ('CP-LEFT', 'gw-fixed', now() - interval '1 minute')"
    )
    db.commit()
    before = len(connection_events(broker, topics, "CP-LEFT"))

    async with Gateway(cfg) as restarted:
        assert holder(db, "CP-LEFT") is None
        events = await apoll(
            lambda: connection_events(broker, topics, "CP-LEFT")[before:],
            lambda e: len(e) >= 1,
            30,
            "the restarted replica's offline",
        )
        assert [
            (e.payload["state"], e.payload["reason"], e.payload["gateway_id"]) for e in events
        ] == [("offline", "gateway gw-fixed restarted", "gw-fixed")]
        # A station connecting to the restarted process keeps its row.
        ws = await connect(
            f"ws://127.0.0.1:{restarted.port}/ocpp/CP-LEFT",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP-LEFT"),
        )
        try:
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3
            await apoll(lambda: holder(db, "CP-LEFT"), lambda h: h == "gw-fixed", 20, "its row")
            assert await restarted.app.liveness.release_previous_life() == []  # type: ignore[union-attr]
            assert holder(db, "CP-LEFT") == "gw-fixed"
        finally:
            await ws.close()
