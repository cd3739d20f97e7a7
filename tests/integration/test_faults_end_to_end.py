"""Predictive diagnostics end to end on the real broker and database: a compressed-time
simulated fleet (OCPP 1.6J and 2.0.1) with injected faults, through the real gateway,
``ocpp.events``, the faults flow (a process), PostgreSQL, the API over HTTP and the
webhooks worker (a process) delivering to a local HTTP receiver. Every injected fault
gets an alert of its label in ``/v1/alerts`` and a signed delivery; the healthy stations
get neither; the topics replayed from offset 0 into a fresh database give the same
alerts."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.config import ApiConfig
from bench.common import flow_env, start_flow, stop_flow
from bus.admin import read_topic
from bus.alerts import FaultAlert, decode_fault_alert
from bus.envelope import Envelope
from bus.normalized import MeterSample
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port
from ingest.gateway.server import Gateway
from ingest.simulator.behaviours.faults import plan_faults
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.ground_truth import (
    GroundTruth,
    InjectedFault,
    Manifest,
    read_ground_truth,
    write_ground_truth,
)
from ingest.simulator.station import SimulatedStation
from notify.signing import SignatureError, verify_signature
from store.alerts import version_key
from tests.support.alerts import outbox_size
from tests.support.api import auth, served_api
from tests.support.flows import events_in, faults_reference, stored_versions
from tests.support.gateway import STATION_PASSWORD, envelopes, gateway_config
from tests.support.polling import apoll, poll_until
from tests.support.webhooks import Receiver, receiver, start_worker, worker_env

pytestmark = pytest.mark.integration

FAULTS_FLOW = "flows.faults.dataflow:from_env()"
START = datetime(2026, 7, 1, 8, tzinfo=UTC)
SEED = 11
STATIONS = [f"SIM-{n:04d}" for n in range(1, 6)]  # odd: OCPP 1.6, even: 2.0.1
# Faults the deterministic rules see within seconds at this time scale: a failing
# controller (error bursts from minute 1, Faulted at 7), a ground fault at minute 3 and
# a frozen register from minute 4 (its Faulted hours later: the register rule must
# find it). SIM-0001 and SIM-0005 stay healthy.
SPEC = "controller:SIM-0002@1m+6m,ground_fault:SIM-0003@3m,meter_frozen:SIM-0004@4m+3h"
SECRET = "e2e-webhook-secret-0123456789"
TIME_SCALE = 120
WINDOW = timedelta(minutes=30)  # station time the fleet runs at least (15 s of wall time)


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    yield from receiver()


def _ground_truth(path: Path) -> GroundTruth:
    """The plan written and read back as a bench would (the ground-truth file)."""
    faults = plan_faults(SPEC, STATIONS, START, seed=SEED)
    manifest = Manifest(tuple(STATIONS), START, None, SEED, len(faults), SPEC)
    write_ground_truth(path, manifest, faults)
    return read_ground_truth(path)


def _fleet(gateway_url: str, database_url: str, faults: tuple[InjectedFault, ...]) -> FleetConfig:
    return FleetConfig(
        gateway_url=gateway_url,
        stations=len(STATIONS),
        sessions_per_station=None,
        meter_interval_s=30,
        time_scale=TIME_SCALE,
        mean_arrival_gap_s=60,
        mean_dwell_s=3600,
        seed=SEED,
        database_url=database_url,
        call_timeout_s=5,
        station_password=STATION_PASSWORD,
        ocpp_versions=("1.6", "2.0.1"),
        station_models=("mixed",),
        varied_use=True,
        idle_meter_interval_s=300,
        start=START,
        faults=faults,
    )


def _api_alerts(base: str, key: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{base}/v1/alerts", params={"limit": 500}, headers=auth(key), timeout=5)
    assert page.status_code == 200, page.text
    assert page.json()["next_cursor"] is None
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def _alert_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT alert_id, station_id, connector_id, kind, first_seen FROM alerts"
            " ORDER BY alert_id"
        ).fetchall()


def _delivered(hooks: Receiver) -> list[FaultAlert]:
    """The alert versions the receiver answered 2xx, each signed with the secret."""
    out = []
    for request in hooks.requests("/hook"):
        if not 200 <= request.status < 300:
            continue
        signature = request.headers["Chargeflow-Signature"]
        verify_signature(SECRET, signature, request.body, tolerance=120)
        with pytest.raises(SignatureError):
            verify_signature(SECRET[::-1], signature, request.body, tolerance=120)
        assert request.headers["Chargeflow-Event"] == "fault.alert"
        out.append(decode_fault_alert(request.body))
    return out


def _versions_of(alerts: list[FaultAlert]) -> set[tuple[str, str]]:
    return {(a.alert_id, version_key(a)) for a in alerts}


def _stop_worker(worker: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM (the worker then exits 0); SIGKILL if it does not stop in time (None)."""
    worker.terminate()
    try:
        return worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return None


def _matches(alert: dict[str, Any], fault: InjectedFault) -> bool:
    """The alert names the fault's station, kind and (for a connector's fault) connector."""
    return (
        alert["station_id"] == fault.station_id
        and alert["kind"] == fault.label.value
        and fault.connector_id in (0, alert["connector_id"])
    )


def _check_first_seen(alerts: list[dict[str, Any]], fault: InjectedFault) -> None:
    """In telemetry time: none before the onset; a hard failure at onset (the ground
    fault) alerted at exactly its instant; a lead-up within the window (the controller's
    error bursts) alerted before its hard failure."""
    first_seen = sorted(datetime.fromisoformat(a["first_seen"]) for a in alerts)
    assert first_seen[0] >= fault.onset, (alerts, fault)
    if fault.hard_failure == fault.onset:
        assert first_seen[0] == fault.hard_failure, (alerts, fault)
    elif fault.scenario == "controller":
        assert fault.hard_failure is not None
        assert first_seen[0] < fault.hard_failure, (alerts, fault)


def _charging_stations(events: list[Envelope]) -> set[str]:
    """Stations whose telemetry shows power flowing (so their silence means something)."""
    return {
        e.charge_point_id
        for e in events
        for f in e.normalized or []
        if isinstance(f, MeterSample)
        and f.measurand == "Power.Active.Import"
        and float(f.value) > 1000
    }


async def _run_fleet_until_alerted(
    broker: EmbeddedBroker,
    database_url: str,
    topics: Topics,
    truth: GroundTruth,
    api: tuple[str, str],
) -> list[dict[str, Any]]:
    """Runs the fleet until every fault is in /v1/alerts and every station's clock is
    ``WINDOW`` past the start; the gateway stops first (its stations' offline events
    then say so: the gateway left, no station went offline), then the fleet. The API's
    alerts at that moment."""
    stations: list[SimulatedStation] = []

    def alerted_and_late(alerts: list[dict[str, Any]]) -> bool:
        # The station clocks read the event loop's time: here, not in apoll's thread.
        late = bool(stations) and min(s.now() for s in stations) >= START + WINDOW
        return late and all(any(_matches(a, f) for a in alerts) for f in truth.faults)

    async with asyncio.TaskGroup() as tg:
        async with Gateway(gateway_config(broker, database_url, topics)) as gw:
            config = _fleet(gw.url, database_url, truth.faults)
            running = tg.create_task(run_fleet(config, on_station=stations.append))
            seen = await apoll(
                lambda: _api_alerts(*api),
                alerted_and_late,
                60,
                "an alert in /v1/alerts for every injected fault, the window over",
            )
        running.cancel()
    return seen


def _consume_then_stop(
    flow: subprocess.Popen[bytes], log: Path, port: int, bootstrap: str, topics: Topics
) -> None:
    """Waits until the flow consumed everything the gateway published (its offline
    events included), then stops it cleanly (its last batch written and published)."""
    published = sum(1 for _ in read_topic(bootstrap, topics.ocpp_events))
    poll_until(
        lambda: events_in(port).get(topics.ocpp_events),
        lambda n: n == published,
        30,
        f"the flow to consume all {published} events",
    )
    assert stop_flow(flow) == 0, log.read_text()[-3000:]


def _check_the_alerts(
    truth: GroundTruth, seen: list[dict[str, Any]], final: list[dict[str, Any]]
) -> None:
    """Every injected fault alerted with its label, station, connector and time; no
    other alert, none for a healthy station."""
    for fault in truth.faults:
        matching = [a for a in seen if _matches(a, fault)]
        assert matching, (fault, seen)
        _check_first_seen(matching, fault)
    assert {(a["station_id"], a["kind"]) for a in final} == {
        (f.station_id, f.label.value) for f in truth.faults
    }, final
    assert all(any(_matches(a, f) for f in truth.faults) for a in final), final


def _check_the_deliveries(
    hooks: Receiver, final: list[dict[str, Any]], versions: list[tuple[Any, ...]], healthy: set[str]
) -> None:
    """A signed request for every stored version of every alert the API has; none about
    a healthy station."""
    delivered = _delivered(hooks)
    assert not [a for a in delivered if a.station_id in healthy]
    assert {a.alert_id for a in delivered} == {a["alert_id"] for a in final}
    assert _versions_of(delivered) == {v[:2] for v in versions}


async def test_a_fleet_with_faults_alerts_through_the_api_and_webhooks_and_replays_equal(
    broker: EmbeddedBroker,
    topics: Topics,
    clean_db: str,
    pg_server: DatabaseServer,
    keys: dict[str, str],
    hooks: Receiver,
    tmp_path: Path,
) -> None:
    truth = _ground_truth(tmp_path / "truth.jsonl")
    healthy = set(truth.manifest.stations) - {f.station_id for f in truth.faults}
    assert len(truth.faults) == 3
    assert healthy == {"SIM-0001", "SIM-0005"}

    port = free_port()
    env = flow_env(
        broker.bootstrap, topics, clean_db, tail=True, CHARGEFLOW_FLOW_METRICS_PORT=str(port)
    )
    flow_log, worker_log = tmp_path / "flow.log", tmp_path / "webhooks.log"
    flow = start_flow(env, log=flow_log, flow=FAULTS_FLOW)
    endpoints = [{"name": "e2e", "url": hooks.url("/hook"), "secret": SECRET}]
    worker = start_worker(
        worker_env(
            bootstrap=broker.bootstrap, database_url=clean_db, topics=topics, endpoints=endpoints
        ),
        worker_log,
    )
    try:
        with served_api(ApiConfig(database_url=clean_db)) as base:
            api = (base, keys["maintenance"])
            seen = await _run_fleet_until_alerted(broker, clean_db, topics, truth, api)
            _consume_then_stop(flow, flow_log, port, broker.bootstrap, topics)
            final = _api_alerts(*api)
        versions = stored_versions(clean_db)
        poll_until(
            lambda: (outbox_size(clean_db), _versions_of(_delivered(hooks))),
            lambda got: got == (0, {v[:2] for v in versions}),
            30,
            "every stored alert version published and delivered",
        )
    finally:
        worker_rc = _stop_worker(worker)
        stop_flow(flow)
    assert worker_rc == 0, worker_log.read_text()[-3000:]

    _check_the_alerts(truth, seen, final)
    # The healthy stations charged in the window: their silence means something.
    assert healthy <= _charging_stations(envelopes(broker, topics.ocpp_events))
    _check_the_deliveries(hooks, final, versions, healthy)

    # Both input topics replayed from offset 0 into a fresh database: the same alerts
    # (ids, kinds, first_seen) and the same versions.
    rows = _alert_rows(clean_db)
    assert [(r[0], r[3], r[4]) for r in rows] == sorted(
        (a["alert_id"], a["kind"], datetime.fromisoformat(a["first_seen"])) for a in final
    )
    replayed = faults_reference(
        pg_server, broker.bootstrap, topics, lambda url: (_alert_rows(url), stored_versions(url))
    )
    assert replayed == (rows, versions)
