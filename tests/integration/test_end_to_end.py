"""The walking skeleton end to end, on the real broker and database:

simulated charge points -> OCPP gateway -> Kafka -> sessions flow (a real
``python -m bytewax.run`` process) -> PostgreSQL -> HTTP API.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from api.config import ApiConfig
from api.main import create_app
from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker
from ingest.gateway.config import GatewayConfig
from ingest.gateway.server import Gateway
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.report import FleetReport
from store.api_keys import create_api_key
from store.db import migrate
from store.id_tokens import add_id_tag
from store.stations import provision_station
from tests.support.flows import FLOW_ARGV, flow_env, flow_process
from tests.support.paths import ROOT

# At least one per station: a tag in a running session elsewhere is refused (ConcurrentTx).
ID_TAGS = [f"E2E-TAG-{n}" for n in range(20)]
STATION_PASSWORD = "e2e-station-password"


@pytest.fixture(scope="module")
def e2e_db(pg_server: DatabaseServer) -> Iterator[str]:
    name = f"chargeflow_test_e2e_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, exist_ok=False)
    migrate(url)
    for tag in ID_TAGS:
        add_id_tag(url, tag)
    for cp_id in [f"E2E-{n:04d}" for n in range(1, 11)] + ["OUTAGE-0001"]:
        provision_station(url, cp_id, password=STATION_PASSWORD)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def e2e_topics(broker: EmbeddedBroker) -> Topics:
    named = Topics.with_prefix(f"e2e{uuid.uuid4().hex[:6]}.")
    ensure_topics(broker.bootstrap, named.all(), partitions=2)
    return named


@pytest.fixture(scope="module")
def sessions_flow(
    broker: EmbeddedBroker,
    e2e_db: str,
    e2e_topics: Topics,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("flow") / "flow.log"
    with flow_process(
        FLOW_ARGV, flow_env(broker.bootstrap, e2e_db, e2e_topics, tail=True), log
    ) as process:
        yield process


@pytest.fixture(scope="module")
async def gateway(
    broker: EmbeddedBroker, e2e_db: str, e2e_topics: Topics
) -> AsyncIterator[Gateway]:
    config = GatewayConfig(
        port=0,
        kafka_bootstrap=broker.bootstrap,
        database_url=e2e_db,
        topics=e2e_topics,
        delivery_timeout_ms=1500,
    )
    async with Gateway(config) as gw:
        yield gw


@pytest.fixture(scope="module")
async def api(broker: EmbeddedBroker, e2e_db: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiConfig(database_url=e2e_db, kafka_bootstrap=broker.bootstrap))
    key = create_api_key(e2e_db, "e2e billing", "billing")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"X-API-Key": key},
        ) as client,
    ):
        yield client


async def list_sessions(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/v1/sessions", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def poll(fetch: Any, done: Any, within: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await fetch()
        if done(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.2)


def truth_by_key(report: FleetReport) -> dict[tuple[str, str], int]:
    return {(s.charge_point_id, str(s.transaction_id)): s.energy_wh for s in report.sessions}


def fast_fleet(
    gateway_url: str, prefix: str, stations: int, sessions: int, **kw: Any
) -> FleetConfig:
    return FleetConfig(
        gateway_url=gateway_url,
        stations=stations,
        sessions_per_station=sessions,
        station_id_prefix=prefix,
        id_tags=tuple(ID_TAGS),
        seed=7,
        station_password=STATION_PASSWORD,
        **{
            "meter_interval_s": 30.0,
            "time_scale": 600.0,
            "mean_dwell_s": 1800.0,
            "mean_arrival_gap_s": 300.0,
            **kw,
        },
    )


async def test_thirty_sessions_reach_the_api_with_exact_energy(
    gateway: Gateway, sessions_flow: subprocess.Popen[bytes], api: httpx.AsyncClient
) -> None:
    report = await asyncio.wait_for(
        run_fleet(fast_fleet(gateway.url, "E2E-", stations=10, sessions=3)), timeout=240
    )
    truth = truth_by_key(report)
    assert len(truth) == 30
    assert all(energy > 0 for energy in truth.values())

    def ours(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in items if s["charge_point_id"].startswith("E2E-")]

    closed = await poll(
        lambda: list_sessions(api, status="closed"),
        lambda items: len(ours(items)) >= 30,
        120,
        "30 closed sessions in the API",
    )
    closed = ours(closed)
    assert len(closed) == 30
    api_energy = {(s["charge_point_id"], s["transaction_id"]): s["energy_wh"] for s in closed}
    assert api_energy == truth
    for session in closed:
        assert session["quality"] == "exact", session
        assert session["energy_wh"] == session["meter_stop_wh"] - session["meter_start_wh"]
        detail = (await api.get(f"/v1/sessions/{session['session_id']}")).json()
        assert detail["sample_count"] > 0
        assert detail["duration_s"] > 0
    assert sessions_flow.poll() is None, "the tailing flow must still be running"


def table_snapshot(database_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as conn:
        sessions = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
        samples = conn.execute(
            "SELECT * FROM meter_samples ORDER BY charge_point_id, connector_id, measurand,"
            " phase, location, context, measured_at"
        ).fetchall()
    return sessions, samples


async def test_replaying_the_whole_topic_changes_nothing(
    broker: EmbeddedBroker,
    e2e_db: str,
    e2e_topics: Topics,
    gateway: Gateway,
    sessions_flow: subprocess.Popen[bytes],
    api: httpx.AsyncClient,
) -> None:
    # Runs after the 30-session test in this module (same database and topic).
    before_sessions, before_samples = table_snapshot(e2e_db)
    assert len(before_sessions) >= 30
    replay = await asyncio.to_thread(
        subprocess.run,
        FLOW_ARGV,
        cwd=ROOT,
        capture_output=True,
        timeout=180,
        env=flow_env(broker.bootstrap, e2e_db, e2e_topics, tail=False),
    )
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    after_sessions, after_samples = table_snapshot(e2e_db)
    assert after_sessions == before_sessions
    assert after_samples == before_samples


async def test_stop_transaction_during_broker_outage_is_retried_and_billed_exactly(
    broker: EmbeddedBroker,
    gateway: Gateway,
    sessions_flow: subprocess.Popen[bytes],
    api: httpx.AsyncClient,
) -> None:
    def stop_errors() -> float:
        value = gateway.registry.get_sample_value(
            "chargeflow_gateway_calls_total",
            {"action": "StopTransaction", "outcome": "InternalError"},
        )
        return value or 0.0

    async def fetch_stop_errors() -> float:
        return stop_errors()

    errors_before = stop_errors()
    frozen = asyncio.Event()

    async def freeze_broker_before_first_stop(cp_id: str, action: str, attempt: int) -> None:
        # Fault injection: the broker stops answering right before the station's
        # first StopTransaction reaches the gateway.
        if action == "StopTransaction" and attempt == 0 and not frozen.is_set():
            broker.pause()
            frozen.set()

    fleet = asyncio.create_task(
        run_fleet(
            fast_fleet(gateway.url, "OUTAGE-", stations=1, sessions=1),
            before_send=freeze_broker_before_first_stop,
        )
    )
    try:
        await asyncio.wait_for(frozen.wait(), timeout=60)
        await poll(
            fetch_stop_errors,
            lambda n: n > errors_before,
            30,
            "a StopTransaction answered with CALLERROR while the broker is down",
        )
        assert not fleet.done(), "the station must keep the unacknowledged StopTransaction"
    finally:
        broker.resume()
    try:
        report = await asyncio.wait_for(fleet, timeout=120)
    finally:
        fleet.cancel()
    assert report.retries >= 1
    truth = truth_by_key(report)
    assert len(truth) == 1
    closed = await poll(
        lambda: list_sessions(api, station="OUTAGE-0001", status="closed"),
        lambda items: len(items) == 1,
        60,
        "the outage session to close",
    )
    (session,) = closed
    assert {(session["charge_point_id"], session["transaction_id"]): session["energy_wh"]} == truth
    assert session["quality"] == "exact"
