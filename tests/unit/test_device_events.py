"""models.device_events: the NotifyEvent/vendor-code vocabulary, and StationDiagnostics
with device events (alerts, clears, 2.0.1 temperatures into the connector model) and
the size of its pickled state."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from bus.alerts import AlertKind, Severity
from bus.envelope import Envelope
from bus.normalized import ConnectorStatus, DeviceEvent, normalize_v201
from ingest.gateway.schemas import SchemaSet
from models.device_events import (
    MREC_CODES,
    device_temperature,
    event_findings,
    status_results,
    vendor_findings,
)
from models.readings import Reading
from models.rules import Clear, Finding
from models.station import StationDiagnostics
from tests.support.builders import ocpp_call

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def event(**kw: Any) -> DeviceEvent:
    fields: dict[str, Any] = dict(
        charge_point_id="CS",
        event_id=1,
        timestamp=T0,
        trigger="Alerting",
        actual_value="true",
        component="EVSE",
        evse_id=1,
        connector_id=1,
        variable="Problem",
        notification_type="HardWiredNotification",
    )
    fields.update(kw)
    return DeviceEvent(**fields)


def kinds(results: Sequence[Finding | Clear]) -> list[tuple[str, str, int]]:
    return [
        (r.kind.value, r.severity.value, r.connector_id) for r in results if isinstance(r, Finding)
    ]


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        (
            {
                "tech_code": "CX019",
                "component": "CableTemperatureSensor",
                "variable": "Temperature",
                "actual_value": "105",
            },
            "connector_overheating",
        ),
        (
            {"component": "ConnectorTemperature", "variable": "Temperature", "actual_value": "80"},
            "connector_overheating",
        ),
        ({"component": "RCD", "variable": "Tripped"}, "ground_fault"),
        ({"tech_code": "GroundFailure"}, "ground_fault"),
        ({"component": "PowerMeter"}, "meter_fault"),
        ({"component": "FiscalMetering", "variable": "Problem"}, "meter_fault"),
        ({"component": "ConnectorPlugRetentionLock", "variable": "Problem"}, "cable_damage"),
        ({"tech_code": "CX001"}, "cable_damage"),
        ({"tech_code": "CX017"}, "contactor_degradation"),
        ({"component": "PowerContactor", "variable": "Tripped"}, "contactor_degradation"),
        ({"component": "Controller", "variable": "Fault"}, "controller_fault"),
        ({"component": "ChargingStation", "evse_id": 0, "connector_id": None}, "controller_fault"),
    ],
)
def test_the_vocabulary(fields: dict[str, Any], kind: str) -> None:
    [finding] = event_findings(event(**fields))
    assert isinstance(finding, Finding)
    assert finding.kind.value == kind
    assert finding.detector == "rule:device_event"
    assert finding.connector_id == fields.get("evse_id", 1)


def test_every_mrec_code_has_a_kind_and_a_code_wins_over_the_component() -> None:
    assert all(isinstance(k, AlertKind) for k, _ in MREC_CODES.values())
    [f] = event_findings(event(component="EVSE", tech_code="CX002"))
    assert isinstance(f, Finding)
    assert (f.kind, f.severity) == (AlertKind.GROUND_FAULT, Severity.CRITICAL)


@pytest.mark.parametrize(
    "fields",
    [
        {
            "trigger": "Periodic",
            "component": "TemperatureSensor",
            "variable": "Temperature",
            "actual_value": "35",
        },
        {
            "trigger": "Delta",
            "component": "PowerMeter",
            "variable": "Power",
            "actual_value": "7000",
        },
        {
            "trigger": "Alerting",
            "component": "TokenReader",
            "variable": "Enabled",
            "actual_value": "true",
        },  # not in the vocabulary
        {
            "trigger": "Delta",
            "component": "EVSE",
            "variable": "AvailabilityState",
            "actual_value": "Occupied",
        },
    ],
)
def test_value_reports_and_unknown_variables_are_no_finding(fields: dict[str, Any]) -> None:
    assert event_findings(event(**fields)) == []


def test_cleared_or_problem_false_clears_that_kind_on_that_evse() -> None:
    for fields in ({"cleared": True, "tech_code": "CX019"}, {"actual_value": "false"}):
        [clear] = event_findings(event(**fields))
        assert isinstance(clear, Clear)
        assert clear.connector_id == 1
        assert clear.detectors == frozenset({"rule:device_event"})
    [clear] = event_findings(event(cleared=True, tech_code="CX019"))
    assert isinstance(clear, Clear)
    assert clear.kinds == frozenset({AlertKind.CONNECTOR_OVERHEATING})


def test_device_temperatures() -> None:
    temp = event(
        component="TemperatureSensor",
        variable="Temperature",
        actual_value="41.5",
        trigger="Periodic",
    )
    assert device_temperature(temp) == 41.5
    assert device_temperature(msgspec.structs.replace(temp, evse_id=0)) is None  # station's
    assert device_temperature(msgspec.structs.replace(temp, component="ConnectedEV")) is None
    assert device_temperature(msgspec.structs.replace(temp, actual_value="hot")) is None
    assert device_temperature(msgspec.structs.replace(temp, actual_value="900")) is None
    assert device_temperature(event()) is None


def status(code: str, vendor: str | None, state: str = "Faulted") -> ConnectorStatus:
    return ConnectorStatus(
        charge_point_id="CP",
        evse_id=1,
        connector_id=1,
        status=state,
        ocpp_status=state,
        error_code=code,
        timestamp=T0,
        vendor_id="https://chargex.inl.gov",
        vendor_error_code=vendor,
        info="105C",
    )


def test_v16_vendor_codes_refine_a_generic_error_code() -> None:
    assert kinds(status_results(status("OtherError", "CX019"))) == [
        ("connector_overheating", "critical", 1)
    ]
    # a specific error code of another kind stays next to the vendor code's kind
    assert kinds(status_results(status("GroundFailure", "CX019"))) == [
        ("ground_fault", "critical", 1),
        ("connector_overheating", "critical", 1),
    ]
    # a comma-separated MREC list: one finding per kind
    assert sorted(kinds(vendor_findings(status("OtherError", "CX018,CX019,CX001")))) == [
        ("cable_damage", "high", 1),
        ("connector_overheating", "critical", 1),
    ]
    # an unknown vendor code leaves the status rule as it was
    assert kinds(status_results(status("OtherError", "ACME-42"))) == [
        ("controller_fault", "medium", 1)
    ]
    [clear] = status_results(status("NoError", None, "Available"))
    assert isinstance(clear, Clear)


# --------------------------------------------------------------------------- station


def call(action: str, payload: dict[str, Any], at: datetime) -> Envelope:
    """A 2.0.1 CALL with the facts the gateway attaches."""
    facts = normalize_v201("CS", action, payload, {}, at)
    return ocpp_call("CS", action, payload, at=at, version="2.0.1", response={}, normalized=facts)


def notify(minute: int, entry: dict[str, Any]) -> Envelope:
    at = T0 + timedelta(minutes=minute)
    stamp = at.isoformat().replace("+00:00", "Z")
    payload = {
        "generatedAt": stamp,
        "seqNo": 0,
        "eventData": [
            {
                "eventId": minute,
                "timestamp": stamp,
                "eventNotificationType": "HardWiredMonitor",
                **entry,
            }
        ],
    }
    assert SchemaSet("2.0.1").validate("NotifyEvent", payload) is None
    return call("NotifyEvent", payload, at)


def meter(minute: float, power_kw: float, evse: int = 1) -> Envelope:
    at = T0 + timedelta(minutes=minute)
    stamp = at.isoformat().replace("+00:00", "Z")
    payload = {
        "evseId": evse,
        "meterValue": [
            {
                "timestamp": stamp,
                "sampledValue": [
                    {
                        "value": power_kw,
                        "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "kW"},
                    },
                    {"value": 230.0, "measurand": "Voltage", "phase": "L1-N"},
                ],
            }
        ],
    }
    return call("MeterValues", payload, at)


def test_a_station_alerts_on_a_device_event_and_resolves_when_cleared() -> None:
    station = StationDiagnostics("CS")
    problem = {
        "trigger": "Alerting",
        "actualValue": "105",
        "techCode": "CX019",
        "component": {"name": "CableTemperatureSensor", "evse": {"id": 1}},
        "variable": {"name": "Temperature"},
    }
    [opened] = station.update(notify(1, problem)).alerts
    assert (opened.alert_kind, opened.status.value, opened.connector_id) == (
        AlertKind.CONNECTOR_OVERHEATING,
        "open",
        1,
    )
    assert station.update(notify(2, problem)).alerts == []
    [resolved] = station.update(notify(3, {**problem, "cleared": True, "actualValue": "60"})).alerts
    assert resolved.status.value == "resolved"
    assert station.clock == T0 + timedelta(minutes=3)


def test_device_temperatures_reach_the_2_0_1_connector_model() -> None:
    station = StationDiagnostics("CS")
    station.update(meter(0, 0.0))
    station.update(
        notify(
            1,
            {
                "trigger": "Delta",
                "actualValue": "24",
                "component": {"name": "TemperatureSensor", "evse": {"id": 1}},
                "variable": {"name": "Temperature"},
            },
        )
    )
    assert station.device_temps == {1: 24.0}
    station.update(meter(2, 0.0))  # the next idle reading learns the ambient from it
    assert station.connectors[1].features.ambient_c == 24.0
    reading = station._with_temperature(1, Reading(time=T0, power_w=7000.0))
    assert reading.temperature_c == 24.0
    # a reading with its own temperature keeps it; another EVSE gets none
    own = Reading(time=T0, temperature_c=30.0)
    assert station._with_temperature(1, own).temperature_c == 30.0
    assert station._with_temperature(2, own).temperature_c == 30.0
    assert station._with_temperature(2, Reading(time=T0)).temperature_c is None


def test_pickled_state_of_a_two_connector_station_after_a_day_stays_small() -> None:
    """The faults flow snapshots this every epoch: a day of minute readings on two
    connectors, heartbeats and device temperatures must stay under 8 KiB (about 3 KiB measured)."""
    station = StationDiagnostics("CS")
    for minute in range(24 * 60):
        charging = (minute // 90) % 2 == 1
        for evse in (1, 2):
            if not charging and minute % 15:
                continue  # idle: clock-aligned readings only
            station.update(meter(minute, 11.0 if charging and evse == 1 else 0.0, evse))
        if minute % 5 == 0:
            station.update(call("Heartbeat", {}, T0 + timedelta(minutes=minute, seconds=30)))
        if minute % 15 == 0:
            station.update(
                notify(
                    minute,
                    {
                        "trigger": "Periodic",
                        "actualValue": str(20 + (minute % 60) / 10),
                        "component": {"name": "TemperatureSensor", "evse": {"id": 1}},
                        "variable": {"name": "Temperature"},
                    },
                )
            )
    size = len(pickle.dumps(station))
    print(f"pickled StationDiagnostics, 2 connectors, one day: {size} bytes")
    assert station.comm.interval_s is not None
    assert size < 8 * 1024, size
    assert pickle.loads(pickle.dumps(station)).comm == station.comm
