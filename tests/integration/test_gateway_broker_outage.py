"""The gateway while its broker is down, on a broker of its own (the shared one is
never stopped): readiness tells the truth (503 with the broker stopped, 200 when it
is back; liveness stays 200), metrics carry the Prometheus content type and process
metrics, and the delivery budget holds for the first CALL after connecting while
the broker is frozen (SIGSTOP)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from tests.support.gateway import gateway_config, open_station
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        broker.stop()


def own_topics(broker: EmbeddedBroker) -> Topics:
    topics = Topics.with_prefix("outage.")
    ensure_topics(broker.bootstrap, topics.all(), partitions=2)
    return topics


def http_get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; error statuses are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_readiness_follows_the_broker_and_metrics_have_their_content_type(
    own_broker: EmbeddedBroker, clean_db: str
) -> None:
    topics = own_topics(own_broker)
    async with Gateway(gateway_config(own_broker, clean_db, topics)) as gw:
        base = f"http://127.0.0.1:{gw.port}"
        status, content_type, body = await asyncio.to_thread(http_get, f"{base}/readyz")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ready", "checks": {"kafka": "ok", "database": "ok"}}

        status, content_type, body = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert status == 200
        assert content_type == CONTENT_TYPE_LATEST
        for name in (
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "python_info",
            "python_gc_collections_total",
            "chargeflow_gateway_connected_stations",
        ):
            assert f"\n{name}" in body, name

        own_broker.stop()
        down: Any = await apoll(
            lambda: http_get(f"{base}/readyz"),
            lambda r: r[0] == 503,
            30,
            "readiness 503 with the broker stopped",
        )
        checks = json.loads(down[2])["checks"]
        assert checks["database"] == "ok"
        assert checks["kafka"] != "ok"
        for path in ("/livez", "/healthz"):  # the process still serves
            assert (await asyncio.to_thread(http_get, f"{base}{path}"))[0] == 200

        back = EmbeddedBroker(port=own_broker.port, log_path=own_broker.log_path).start()
        try:
            own_topics(back)  # the broker keeps nothing in memory across a restart
            up: Any = await apoll(
                lambda: http_get(f"{base}/readyz"),
                lambda r: r[0] == 200,
                30,
                "readiness 200 with the broker back",
            )
            assert json.loads(up[2])["status"] == "ready"
        finally:
            back.stop()


DELIVERY_BUDGET_MS = 3000


async def test_the_delivery_budget_holds_for_the_first_call_while_the_broker_is_frozen(
    own_broker: EmbeddedBroker, clean_db: str
) -> None:
    """A station connects to a gateway whose broker stopped answering and sends one
    CALL: the CALLERROR must come within the delivery budget (+1 s of slack for the
    producer's timeout scan), not after the station's own online event's budget too."""
    topics = own_topics(own_broker)
    cfg = gateway_config(own_broker, clean_db, topics, delivery_timeout_ms=DELIVERY_BUDGET_MS)
    async with Gateway(cfg) as gw:
        ws = await open_station(gw, "CP-OUTAGE")  # provisions it too
        await ws.close()
        own_broker.pause()
        try:
            ws = await open_station(gw, "CP-OUTAGE")
            try:
                started = time.monotonic()
                await ws.send(json.dumps([2, "first-call", "Heartbeat", {}]))
                async with asyncio.timeout(4 * DELIVERY_BUDGET_MS / 1000):
                    frame = json.loads(await ws.recv())
                took = time.monotonic() - started
            finally:
                await ws.close()
        finally:
            own_broker.resume()
    assert frame[:2] == [4, "first-call"], frame
    assert frame[2] == "InternalError"
    assert took < DELIVERY_BUDGET_MS / 1000 + 1.0, f"answered after {took:.2f} s"
