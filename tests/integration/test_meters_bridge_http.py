"""The meter bridge's health and metrics endpoint over real HTTP: what it answers to
oversized requests and wrong methods, its metrics' content type, and readiness that
follows the MQTT broker (a private Mosquitto on a free port, stopped mid-test) and
Kafka (the embedded broker, paused)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from bus.topics import Topics
from chargeflow.mqtt import EmbeddedMqttBroker, mosquitto_binary
from chargeflow.stack import EmbeddedBroker
from ingest.meters import MeterBridge, MqttEndpoint
from tests.support.meters import bridge_config, publish, running
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


@pytest.fixture
def own_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMqttBroker]:
    """A Mosquitto of this test's own on a free port (the shared one stays untouched)."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    directory = tmp_path_factory.mktemp("mosquitto")
    with EmbeddedMqttBroker(
        backend="mosquitto", data_dir=directory, log_path=directory / "mosquitto.log"
    ) as broker:
        yield broker


@contextlib.asynccontextmanager
async def http_client(bridge: MeterBridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{bridge.http_port}", timeout=10
    ) as client:
        yield client


async def raw_request(port: int, request: bytes) -> bytes:
    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    return await asyncio.to_thread(exchange)


async def test_oversized_request_line_wrong_methods_and_metrics_content_type(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    config = bridge_config(mqtt, broker, clean_db, topics, prefix, http_port=0)
    async with running(config) as bridge, http_client(bridge) as http:
        assert bridge.http_port
        answer = await raw_request(
            bridge.http_port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 414 Request-URI Too Long"
        for method in ("POST", "DELETE", "PUT"):
            for path in ("/healthz", "/readyz", "/livez", "/metrics"):
                assert (await http.request(method, path)).status_code == 405, (method, path)
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"] == CONTENT_TYPE_LATEST
        assert "chargeflow_meters_mqtt_connected 1.0" in metrics.text
        assert "process_cpu_seconds_total" in metrics.text
        assert (await http.get("/livez")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        # The bridge still works after all that.
        await publish(mqtt, f"{prefix}/meters/MTR-X/reading", b"nonsense")
        await apoll(
            lambda: bridge.registry.get_sample_value(
                "chargeflow_meters_readings_rejected_total", {"reason": "invalid_json"}
            ),
            lambda v: v == 1,
            20,
            "the rejection counted",
        )


async def test_readiness_follows_the_mqtt_broker(
    own_mosquitto: EmbeddedMqttBroker,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    endpoint = MqttEndpoint.from_url(own_mosquitto.url)
    config = bridge_config(endpoint, broker, clean_db, topics, prefix, http_port=0)
    async with running(config) as bridge, http_client(bridge) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        await asyncio.to_thread(own_mosquitto.stop)
        gone = await apoll(
            lambda: httpx.get(f"http://127.0.0.1:{bridge.http_port}/readyz", timeout=10),
            lambda r: r.status_code == 503,
            20,
            "readiness to turn 503",
        )
        checks = gone.json()["checks"]
        assert checks["mqtt"]["ok"] is False
        assert endpoint.url in checks["mqtt"]["error"]
        assert checks["kafka"] == {"ok": True}
        assert (await http.get("/livez")).status_code == 200  # alive, only not ready
        await asyncio.to_thread(own_mosquitto.start)
        await apoll(
            lambda: (
                httpx.get(f"http://127.0.0.1:{bridge.http_port}/readyz", timeout=10).status_code
            ),
            lambda s: s == 200,
            30,
            "readiness back after the broker returned",
        )


async def test_readiness_turns_503_while_kafka_does_not_answer(
    mqtt: MqttEndpoint,
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    prefix: str,
) -> None:
    config = bridge_config(mqtt, broker, clean_db, topics, prefix, http_port=0)
    async with running(config) as bridge, http_client(bridge) as http:
        assert (await http.get("/readyz")).status_code == 200
        broker.pause()
        try:
            answer = await http.get("/readyz")
        finally:
            broker.resume()
        assert answer.status_code == 503
        assert answer.json()["checks"]["kafka"]["ok"] is False
        assert answer.json()["checks"]["mqtt"] == {"ok": True}
        await apoll(
            lambda: (
                httpx.get(f"http://127.0.0.1:{bridge.http_port}/readyz", timeout=10).status_code
            ),
            lambda s: s == 200,
            30,
            "readiness back after Kafka returned",
        )
