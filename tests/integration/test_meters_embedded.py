"""The embedded MQTT broker (chargeflow.mqtt), the bridge reconnecting through a broker
restart, and the ``chargeflow meters`` / ``chargeflow meter add`` commands."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import httpx
import pytest
from typer.testing import CliRunner

from bus.admin import read_topic
from bus.envelope import decode_envelope
from bus.topics import Topics
from chargeflow.cli import app
from chargeflow.mqtt import EmbeddedMqttBroker, amqtt_available, mosquitto_binary
from chargeflow.stack import EmbeddedBroker, free_port, tcp_open
from ingest.meters import MqttEndpoint
from store.meters import add_meter, list_meters
from store.stations import provision_station
from tests.support.meters import bridge_config, messages, publish, reading, running, sample
from tests.support.polling import apoll
from tests.support.processes import output_once_stopped

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
async def test_bridge_through_embedded_mosquitto_survives_a_broker_restart(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
    tmp_path: Path,
) -> None:
    provision_station(clean_db, "CP-E1")
    add_meter(clean_db, "MTR-E1", "CP-E1", 1)
    port = free_port()
    embedded = EmbeddedMqttBroker(
        port, backend="mosquitto", data_dir=tmp_path, log_path=tmp_path / "mqtt.log"
    ).start()
    try:
        endpoint = MqttEndpoint.from_url(embedded.url)
        assert endpoint.port == port
        async with running(bridge_config(endpoint, broker, clean_db, topics, prefix)) as bridge:
            await publish(endpoint, f"{prefix}/meters/MTR-E1/reading", reading("MTR-E1"))
            await apoll(
                messages(broker, topics.meter_readings),
                lambda m: len(m) == 1,
                20,
                "a reading through the embedded broker",
            )
            embedded.stop()
            await apoll(
                lambda: bridge.subscribed.is_set(),
                lambda s: not s,
                20,
                "the bridge noticing the broker is gone",
            )
            embedded = EmbeddedMqttBroker(
                port, backend="mosquitto", data_dir=tmp_path, log_path=tmp_path / "mqtt.log"
            ).start()
            await asyncio.wait_for(bridge.subscribed.wait(), 30)  # reconnected with backoff
            later = reading("MTR-E1", energy=1_000_500, time="2026-11-22T09:05:00Z")
            await publish(endpoint, f"{prefix}/meters/MTR-E1/reading", later)
            out = await apoll(
                messages(broker, topics.meter_readings),
                lambda m: len(m) == 2,
                20,
                "a reading after the broker restart",
            )
            assert sample(bridge, "chargeflow_meters_mqtt_connection_failures_total") >= 1
        energies = sorted(decode_envelope(m.value()).payload["energy_wh"] for m in out)
        assert energies == ["1000000", "1000500"]
    finally:
        embedded.stop()
    assert not tcp_open("127.0.0.1", port)


@pytest.mark.skipif(not amqtt_available(), reason="amqtt missing (make: .venv-mqtt)")
async def test_bridge_through_embedded_amqtt(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
    tmp_path: Path,
) -> None:
    provision_station(clean_db, "CP-E2")
    add_meter(clean_db, "MTR-E2", "CP-E2", 1)
    with EmbeddedMqttBroker(backend="amqtt", log_path=tmp_path / "amqtt.log") as embedded:
        assert embedded.backend == "amqtt"
        endpoint = MqttEndpoint.from_url(embedded.url)
        async with running(bridge_config(endpoint, broker, clean_db, topics, prefix)):
            await publish(endpoint, f"{prefix}/meters/MTR-E2/reading", reading("MTR-E2"))
            await publish(endpoint, f"{prefix}/meters/MTR-E2/reading", b"garbage")
            await apoll(
                messages(broker, topics.deadletter),
                lambda m: len(m) == 1,
                20,
                "a dead letter through amqtt",
            )
            out = await apoll(
                messages(broker, topics.meter_readings),
                lambda m: len(m) == 1,
                20,
                "a reading through amqtt",
            )
    assert out[0].key() == b"CP-E2"


def _add_meters_with_the_cli(clean_db: str) -> None:
    runner = CliRunner()
    env = {"CHARGEFLOW_DATABASE_URL": clean_db}
    added = runner.invoke(
        app,
        ["meter", "add", "MTR-E3", "--station", "CP-E3", "--connector", "2", "--billing"],
        env=env,
    )
    assert added.exit_code == 0, added.output
    refused = runner.invoke(app, ["meter", "add", "MTR-E4", "--station", "CP-NOPE"], env=env)
    assert refused.exit_code == 2
    assert "unknown charge point" in refused.output
    assert [(m.meter_id, m.connector_id, m.is_billing_meter) for m in list_meters(clean_db)] == [
        ("MTR-E3", 2, True)
    ]


def _meters_env(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
    http_port: int,
) -> dict[str, str]:
    return {
        **os.environ,
        "CHARGEFLOW_MQTT_URL": f"mqtt://{mqtt.host}:{mqtt.port}",
        "CHARGEFLOW_MQTT_TOPIC_PATTERN": f"{prefix}/meters/+/reading",
        "CHARGEFLOW_MQTT_CLIENT_ID": prefix,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events.removesuffix("ocpp.events"),
        "CHARGEFLOW_METERS_HTTP_PORT": str(http_port),
    }


async def _wait_until_healthy(process: asyncio.subprocess.Process, http_port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:

        async def health() -> int:
            try:
                return (await http.get("/healthz")).status_code
            except httpx.TransportError:
                return 0

        deadline = asyncio.get_running_loop().time() + 30
        while await health() != 200:
            assert process.returncode is None, "the meters command exited"
            assert asyncio.get_running_loop().time() < deadline, "bridge never healthy"
            await asyncio.sleep(0.1)


async def test_meters_command_bridges_until_sigterm(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    provision_station(clean_db, "CP-E3")
    http_port = free_port()
    _add_meters_with_the_cli(clean_db)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargeflow.cli",
        "meters",
        cwd=ROOT,
        env=_meters_env(mqtt, broker, clean_db, topics, prefix, http_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await _wait_until_healthy(process, http_port)
        await publish(mqtt, f"{prefix}/meters/MTR-E3/reading", reading("MTR-E3"))
        out = await apoll(
            messages(broker, topics.meter_readings),
            lambda m: len(m) == 1,
            20,
            "a reading through the meters command",
        )
        envelope = decode_envelope(out[0].value())
        assert (envelope.charge_point_id, envelope.payload["connector_id"]) == ("CP-E3", 2)
        assert envelope.payload["is_billing_meter"] is True
        process.send_signal(signal.SIGTERM)
        output = await output_once_stopped(process, deadline_s=30)
        assert process.returncode == 0, output
        assert "meter bridge stopped" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        # Drop the command's persistent session from the shared broker.
        async with aiomqtt.Client(mqtt.host, mqtt.port, identifier=prefix, clean_session=True):
            pass
    assert list(read_topic(broker.bootstrap, topics.deadletter)) == []
