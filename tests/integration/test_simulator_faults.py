"""The fault library against the real gateway, in compressed time: the hard failures of
the ground truth are on ocpp.events at the ground-truth times (station time), and the
lead-up shows in the telemetry before them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.envelope import Envelope
from bus.normalized import MeterSample
from bus.times import format_rfc3339
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from ingest.simulator.behaviours.faults import plan_faults
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.ground_truth import InjectedFault, Manifest, read_ground_truth
from ingest.simulator.ground_truth import write_ground_truth as write_truth
from ingest.simulator.report import FleetReport
from ingest.simulator.station import SimulatedStation
from tests.support.gateway import STATION_PASSWORD, envelopes, gateway_config
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

START = datetime(2026, 7, 1, 10, tzinfo=UTC)
STATIONS = ["SIM-0001", "SIM-0002", "SIM-0003", "SIM-0004"]
SPEC = (
    "overheating:SIM-0001@20m+70m,contactor:SIM-0002@20m+80m,"
    "ground_fault:SIM-0003@50m,controller:SIM-0004@10m+60m"
)


def fleet(url: str, database_url: str, faults: list[InjectedFault]) -> FleetConfig:
    return FleetConfig(
        gateway_url=url,
        stations=len(STATIONS),
        sessions_per_station=None,
        meter_interval_s=60,
        time_scale=2000,
        mean_arrival_gap_s=300,
        mean_dwell_s=2400,
        seed=5,
        database_url=database_url,
        call_timeout_s=5,
        station_password=STATION_PASSWORD,
        ocpp_versions=("1.6", "2.0.1"),
        station_models=("mixed",),
        varied_use=True,
        idle_meter_interval_s=300,
        start=START,
        faults=tuple(faults),
    )


def hard_failures(events: list[Envelope], cp_id: str) -> list[Envelope]:
    """The Faulted statuses of a station (1.6 with its error code)."""
    return [
        e
        for e in events
        if e.charge_point_id == cp_id
        and e.action == "StatusNotification"
        and (e.payload.get("status") or e.payload.get("connectorStatus")) == "Faulted"
    ]


async def test_a_fleet_with_faults_reports_the_hard_failures_at_the_ground_truth_times(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, tmp_path: Path
) -> None:
    faults = plan_faults(SPEC, STATIONS, START, seed=5)
    truth = tmp_path / "truth.jsonl"
    write_truth(truth, Manifest(tuple(STATIONS), START, None, 5, len(faults), SPEC), faults)
    ground = read_ground_truth(truth)  # what a bench would read
    assert ground.manifest.faults == 4
    faults = list(ground.faults)
    report = FleetReport()

    def all_failed(events: list[Envelope]) -> bool:
        return all(hard_failures(events, f.station_id) for f in faults)

    stations: list[SimulatedStation] = []
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        config = fleet(gw.url, clean_db, faults)
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(run_fleet(config, report, on_station=stations.append))
            # Until every station's hard failure was acknowledged (so it is on the topic:
            # the gateway publishes before it answers); then the fleet stops.
            await apoll(
                lambda: [
                    s.cp_id for s in stations if any(r.faulted for r in s.state.faults_reported)
                ],
                lambda failed: len(failed) == len(STATIONS),
                90,
                "every station's Faulted acknowledged",
            )
            running.cancel()
    events = envelopes(broker, topics.ocpp_events)
    assert all_failed(events)

    _check_the_events(events, {f.station_id: f for f in faults})


def _check_the_events(events: list[Envelope], by_station: dict[str, InjectedFault]) -> None:
    for cp_id, fault in by_station.items():
        assert fault.hard_failure is not None
        (first, *_) = hard_failures(events, cp_id)
        assert first.payload["timestamp"] == format_rfc3339(fault.hard_failure), cp_id
    # 1.6 stations carry the error code in the StatusNotification ...
    overheat = hard_failures(events, "SIM-0001")[0]
    assert overheat.payload["errorCode"] == "HighTemperature"
    ground = hard_failures(events, "SIM-0003")[0]
    assert ground.payload["errorCode"] == "GroundFailure"
    # ... 2.0.1 stations in a NotifyEvent on the device-model component, same instant.
    notify = [
        e.payload["eventData"][0]
        for e in events
        if e.charge_point_id == "SIM-0002" and e.action == "NotifyEvent"
    ]
    contactor = [d for d in notify if d.get("techCode") == "PowerSwitchFailure"]
    assert contactor
    assert contactor[0]["component"]["name"] == "PowerContactor"
    contactor_failed = by_station["SIM-0002"].hard_failure
    assert contactor_failed is not None
    assert contactor[0]["timestamp"] == format_rfc3339(contactor_failed)
    temperatures = [d for d in notify if d["variable"]["name"] == "Temperature"]
    assert temperatures, "2.0.1 temperatures come as NotifyEvent"
    # The controller's lead-up: error reports before the hard failure.
    controller = by_station["SIM-0004"]
    assert controller.hard_failure is not None
    codes = [
        d
        for e in events
        if e.charge_point_id == "SIM-0004" and e.action == "NotifyEvent"
        for d in e.payload["eventData"]
        if d.get("techCode") in ("InternalError", "OtherError")
    ]
    assert any(d["timestamp"] < format_rfc3339(controller.hard_failure) for d in codes)
    _check_overheating_lead_up(events, by_station["SIM-0001"])


def _check_overheating_lead_up(events: list[Envelope], fault: InjectedFault) -> None:
    """Temperatures under load are higher per kW just before the hard failure than before
    the onset (telemetry times from the station's clock)."""
    assert fault.hard_failure is not None
    per_time: dict[datetime, dict[str, float]] = {}
    for e in events:
        if e.charge_point_id != fault.station_id:
            continue
        for f in e.normalized or []:
            if isinstance(f, MeterSample) and f.measurand in ("Temperature", "Power.Active.Import"):
                per_time.setdefault(f.timestamp, {})[f.measurand] = float(f.value)
    loaded = {
        t: v for t, v in per_time.items() if v.get("Power.Active.Import", 0) > 3000 and len(v) == 2
    }
    assert loaded, "no temperature under load"
    late = [
        v["Temperature"]
        for t, v in loaded.items()
        if fault.hard_failure - timedelta(minutes=15) <= t < fault.hard_failure
    ]
    early = [v["Temperature"] for t, v in loaded.items() if t < fault.onset]
    if late and early:
        assert max(late) > max(early)
