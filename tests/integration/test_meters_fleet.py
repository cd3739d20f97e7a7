"""``chargeflow simulate --mqtt-url``: the simulated stations' smart meters follow the
stations' own registers, so the sessions flow's cross-check agrees with the station.

Real components: the gateway (in-process), the MQTT broker (Mosquitto on
127.0.0.1:1883, else CHARGEFLOW_TEST_MQTT_URL, else an embedded one), the meter
bridge (in-process), Kafka, the sessions flow (a ``python -m flows.run`` process in
tail mode) and PostgreSQL; the simulator is the ``chargeflow simulate`` command.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from psycopg.rows import dict_row

from bus.admin import read_topic
from bus.topics import Topics
from chargeflow.launcher import SIMULATED_ID_TAGS, seed_simulated_meters, simulated_station_ids
from chargeflow.stack import EmbeddedBroker, free_port
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from ingest.meters import MqttEndpoint, parse_reading
from ingest.simulator.meters import meter_id_for
from store.id_tokens import add_id_tag
from store.stations import provision_station
from tests.support.flows import FLOW_ARGV, flow_env, flow_process
from tests.support.meters import bridge_config, running
from tests.support.paths import ROOT
from tests.support.polling import apoll
from tests.support.processes import output_once_stopped

pytestmark = pytest.mark.integration
PASSWORD = "meters-fleet-station-password"
STATIONS = 3
SESSIONS = 2
TOLERANCE_RATIO, TOLERANCE_WH = Decimal("0.01"), 10


def simulate_env(mqtt: MqttEndpoint, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")}
    return {
        **env,
        "CHARGEFLOW_SIMULATOR_STATION_PASSWORD": PASSWORD,
        "CHARGEFLOW_MQTT_TOPIC_PATTERN": f"{prefix}/meters/+/reading",
        "CHARGEFLOW_SIMULATOR_MEAN_ARRIVAL_GAP_S": "120",
        "CHARGEFLOW_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def stations(clean_db: str) -> list[str]:
    ids = simulated_station_ids(STATIONS)
    for cp_id in ids:
        provision_station(clean_db, cp_id, password=PASSWORD)
    for tag in SIMULATED_ID_TAGS:
        add_id_tag(clean_db, tag)
    seed_simulated_meters(clean_db, ids)  # the first station's meter bills
    return ids


@pytest.fixture
async def gateway(broker: EmbeddedBroker, clean_db: str, topics: Topics) -> AsyncIterator[Gateway]:
    config = GatewayConfig(
        port=0,
        kafka_bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        delivery_timeout_ms=1500,
    )
    async with Gateway(config) as gw:
        yield gw


@pytest.fixture
def sessions_flow(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "flow.log"
    with flow_process(
        FLOW_ARGV, flow_env(broker.bootstrap, clean_db, topics, tail=True), log
    ) as process:
        yield process


def closed_sessions(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT charge_point_id, connector_id, transaction_id, energy_wh, energy_source,"
            " quality, quality_reasons, station_energy_wh, smart_meter_energy_wh,"
            " smart_meter_id FROM sessions WHERE status = 'closed'"
            " ORDER BY charge_point_id, started_at"
        ).fetchall()


async def _simulate_the_fleet(
    gateway: Gateway, mqtt: MqttEndpoint, prefix: str, report: Path
) -> str:
    """Runs ``chargeflow simulate`` to the end; returns its output."""
    simulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargeflow.cli",
        "simulate",
        "--stations",
        str(STATIONS),
        "--sessions",
        str(SESSIONS),
        # 600x: the flow's 15-minute window for the meter readings around a start or
        # stop is 1.5 s here; an idle meter's equal readings around a start or stop
        # pin the register whatever the lag between the two topics.
        "--gateway",
        gateway.url,
        "--time-scale",
        "600",
        "--meter-interval",
        "30",
        "--mean-dwell",
        "300",
        "--report",
        str(report),
        "--mqtt-url",
        f"mqtt://{mqtt.host}:{mqtt.port}",
        "--smart-meter-interval",
        "0.1",
        cwd=ROOT,
        env=simulate_env(mqtt, prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = await output_once_stopped(simulator, deadline_s=120)
    finally:
        if simulator.returncode is None:
            simulator.kill()
            await simulator.wait()
    assert simulator.returncode == 0, output[-4000:]
    return output


def _check_meters_agree_with_stations(closed: list[dict[str, Any]], billing_station: str) -> None:
    for row in closed:
        assert row["connector_id"] == 1, row
        assert row["quality"] == "exact", row
        assert row["smart_meter_id"] == meter_id_for(row["charge_point_id"]), row
        meter, energy = row["smart_meter_energy_wh"], row["energy_wh"]
        assert meter is not None, row
        assert abs(meter - energy) <= TOLERANCE_RATIO * max(meter, energy) + TOLERANCE_WH, row
        assert meter == energy, row  # the same register, read at the same simulated times
        if row["charge_point_id"] == billing_station:
            assert row["energy_source"] == "smart_meter", row
        else:
            assert row["energy_source"] == "station_register", row
            assert row["station_energy_wh"] == energy, row
    assert any(r["charge_point_id"] == billing_station for r in closed)


async def test_simulated_meters_agree_with_the_stations_through_the_whole_pipeline(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
    stations: list[str],
    gateway: Gateway,
    sessions_flow: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "truth.json"
    async with running(bridge_config(mqtt, broker, clean_db, topics, prefix)):
        output = await _simulate_the_fleet(gateway, mqtt, prefix, report_path)
        assert "simulated smart meters stopped" in output
        truth = json.loads(report_path.read_text())["sessions"]
        assert len(truth) == STATIONS * SESSIONS
        closed = await apoll(
            lambda: closed_sessions(clean_db),
            lambda rows: len(rows) >= len(truth),
            60,
            "every simulated session closed",
        )

    assert sessions_flow.poll() is None, "the tailing flow must still be running"
    expected = {(s["charge_point_id"], str(s["transaction_id"])): s["energy_wh"] for s in truth}
    assert {(r["charge_point_id"], r["transaction_id"]): r["energy_wh"] for r in closed} == (
        expected
    )
    _check_meters_agree_with_stations(closed, stations[0])
    assert list(read_topic(broker.bootstrap, topics.deadletter)) == []


async def test_simulate_with_meters_stops_cleanly_on_sigterm(
    mqtt: MqttEndpoint,
    prefix: str,
) -> None:
    # No gateway: the stations keep retrying, their registers stand still, the meters
    # publish them anyway.
    seen: dict[str, list[int]] = {}
    async with aiomqtt.Client(mqtt.host, mqtt.port) as client:
        await client.subscribe(f"{prefix}/meters/+/reading", qos=1)
        simulator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chargeflow.cli",
            "simulate",
            "--stations",
            "2",
            "--gateway",
            f"ws://127.0.0.1:{free_port()}/ocpp",
            "--smart-meter-interval",
            "0.1",
            cwd=ROOT,
            env={
                **simulate_env(mqtt, prefix),
                "CHARGEFLOW_MQTT_URL": f"mqtt://{mqtt.host}:{mqtt.port}",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(60):
                async for message in client.messages:
                    reading = parse_reading(bytes(message.payload))
                    seen.setdefault(reading.meter_id, []).append(int(reading.energy_wh))
                    if len(seen) == 2 and all(len(v) >= 3 for v in seen.values()):
                        break
            simulator.send_signal(signal.SIGTERM)
            output = await output_once_stopped(simulator, deadline_s=30)
        finally:
            if simulator.returncode is None:
                simulator.kill()
                await simulator.wait()
    assert simulator.returncode == 0, output[-4000:]
    assert "simulated smart meters stopped" in output
    assert sorted(seen) == ["MTR-SIM-0001-1", "MTR-SIM-0002-1"]
    for energies in seen.values():
        assert len(set(energies)) == 1  # nothing charged: the station register stood still
        assert 1_000_000 <= energies[0] <= 90_000_000
