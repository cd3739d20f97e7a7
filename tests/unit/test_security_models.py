"""Security anomalies (models.security) and their path through StationDiagnostics."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus.alerts import AlertKind, AlertStatus, Severity
from bus.envelope import Envelope, Kind
from bus.normalized import Authorization, SecurityEvent
from models.readings import Reading
from models.security import (
    SECURITY_EVENTS,
    RejectedAuthorizations,
    UnexplainedEnergy,
    gateway_alert_finding,
    security_event_finding,
)
from models.station import StationDiagnostics
from tests.support.builders import iso, ocpp_call

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def gateway_alert(payload: dict[str, Any], received: datetime, cp: str = "CP1") -> Envelope:
    return Envelope(
        message_id=f"a-{received.isoformat()}",
        charge_point_id=cp,
        received_at=received,
        measured_at=received,
        kind=Kind.SECURITY_ALERT,
        payload={**payload, "gateway_id": "gw-1"},
    )


FAILED_LOGINS = {
    "alert": "repeated_failed_authentication",
    "scope": "station",
    "consequence": "slowed",
    "source_ip": "192.0.2.7",
    "failures": 10,
    "window_s": 300.0,
    "cooldown_s": 600.0,
    "last_reason": "wrong_password",
    "known_station": True,
}
CONCURRENT = {
    "alert": "concurrent_id_tag",
    "id_tag": "CARD-9",
    "connector_id": 2,
    "other_charge_point_id": "CP7",
    "other_transaction_id": "41",
    "other_connector_id": 1,
    "other_started_at": "2026-07-01T11:40:00Z",
}


def meter(
    evse: int, minute: float, power_w: float, register_wh: float, tx: int | None = None
) -> Envelope:
    payload: dict[str, Any] = {
        "connectorId": evse,
        "meterValue": [
            {
                "timestamp": iso(at(minute)),
                "sampledValue": [
                    {"value": str(register_wh), "measurand": "Energy.Active.Import.Register"},
                    {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
                ],
            }
        ],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return ocpp_call("CP1", "MeterValues", payload, at=at(minute), version="1.6", response={})


def start(evse: int, minute: float, tx: int, meter_wh: int = 0) -> Envelope:
    payload = {
        "connectorId": evse,
        "idTag": "T",
        "meterStart": meter_wh,
        "timestamp": iso(at(minute)),
    }
    response = {"transactionId": tx, "idTagInfo": {"status": "Accepted"}}
    return ocpp_call(
        "CP1", "StartTransaction", payload, at=at(minute), version="1.6", response=response
    )


def stop(minute: float, tx: int, meter_wh: int, reason: str = "EVDisconnected") -> Envelope:
    payload = {
        "transactionId": tx,
        "meterStop": meter_wh,
        "timestamp": iso(at(minute)),
        "reason": reason,
    }
    return ocpp_call("CP1", "StopTransaction", payload, at=at(minute), version="1.6", response={})


def authorize(received: datetime, tag: str, status: str, version: str = "1.6") -> Envelope:
    if version == "1.6":
        payload: dict[str, Any] = {"idTag": tag}
        response: dict[str, Any] = {"idTagInfo": {"status": status}}
    else:
        payload = {"idToken": {"idToken": tag, "type": "ISO14443"}}
        response = {"idTokenInfo": {"status": status}}
    return ocpp_call("CP1", "Authorize", payload, at=received, version=version, response=response)


def security_event(minute: float, event_type: str, version: str = "2.0.1") -> Envelope:
    payload = {"type": event_type, "timestamp": iso(at(minute))}
    return ocpp_call(
        "CP1", "SecurityEventNotification", payload, at=at(minute), version=version, response={}
    )


def kinds(alerts: list[Any]) -> list[tuple[str, int, str]]:
    return [(a.alert_kind.value, a.connector_id, a.status.value) for a in alerts]


# --------------------------------------------------------------------------- gateway alerts


def test_failed_logins_of_a_station_are_a_high_security_finding_at_the_gateways_time() -> None:
    finding = gateway_alert_finding(gateway_alert(FAILED_LOGINS, at(3)))
    assert finding is not None
    assert (finding.kind, finding.connector_id, finding.severity) == (
        AlertKind.SECURITY,
        0,
        Severity.HIGH,
    )
    assert finding.at == at(3)
    assert finding.gateway_time
    assert finding.evidence.features == {"failures": 10.0, "window_s": 300.0}
    assert "10 failed logins within 300 s" in finding.evidence.summary


def test_failed_logins_from_one_source_are_medium_and_unknown_ids_are_no_stations() -> None:
    by_source = gateway_alert_finding(gateway_alert({**FAILED_LOGINS, "scope": "source_ip"}, at(0)))
    assert by_source is not None
    assert by_source.severity is Severity.MEDIUM
    unknown = {**FAILED_LOGINS, "known_station": False}
    assert gateway_alert_finding(gateway_alert(unknown, at(0))) is None


def test_a_concurrent_id_tag_is_the_starts_connectors_without_the_tag_in_the_sentence() -> None:
    finding = gateway_alert_finding(gateway_alert(CONCURRENT, at(0)))
    assert finding is not None
    assert (finding.connector_id, finding.severity) == (2, Severity.HIGH)
    assert "CP7" in finding.evidence.summary
    assert "CARD-9" not in finding.evidence.summary


def test_an_unknown_gateway_alert_is_still_a_finding() -> None:
    finding = gateway_alert_finding(gateway_alert({"alert": "new_thing"}, at(0)))
    assert finding is not None
    assert (finding.severity, finding.detector) == (Severity.MEDIUM, "rule:gateway_new_thing")


def test_gateway_alerts_never_move_the_telemetry_clock_and_resolve_on_gateway_time() -> None:
    station = StationDiagnostics("CP1")
    station.update(meter(1, 0, 0, 100))
    assert station.clock == at(0)
    # A compressed replay: the gateway's clock is a day ahead of the station's.
    later = at(24 * 60)
    opened = station.update(gateway_alert(FAILED_LOGINS, later)).alerts
    assert kinds(opened) == [("security", 0, "open")]
    assert opened[0].first_seen == later
    assert station.clock == at(0)
    # Telemetry time passing does not resolve it, gateway time does.
    assert station.update(meter(1, 45, 0, 100)).alerts == []
    assert station.clock == at(45)
    quiet = ocpp_call(
        "CP1", "Heartbeat", {}, at=later + timedelta(minutes=31), version="1.6", response={}
    )
    assert kinds(station.update(quiet).alerts) == [("security", 0, "resolved")]
    assert station.clock == at(45)


def test_telemetry_alerts_do_not_resolve_on_gateway_time() -> None:
    station = StationDiagnostics("CP1")
    opened = station.update(security_event(0, "TamperDetectionActivated")).alerts
    assert kinds(opened) == [("security", 0, "open")]
    heartbeat = ocpp_call("CP1", "Heartbeat", {}, at=at(600), version="1.6", response={})
    assert station.update(heartbeat).alerts == []
    assert kinds(station.update(meter(1, 31, 0, 100)).alerts) == [("security", 0, "resolved")]


# ---------------------------------------------------------------- rejected authorisations


def auth(received: datetime, tag: str, status: str) -> Authorization:
    return Authorization(charge_point_id="CP1", id_tag=tag, auth_status=status, timestamp=received)


def test_a_burst_of_rejections_from_many_cards_fires() -> None:
    rule = RejectedAuthorizations()
    results = [rule.update(auth(at(m), f"C{m}", "Invalid")) for m in range(5)]
    assert results[:4] == [None] * 4
    finding = results[4]
    assert finding is not None
    assert (finding.kind, finding.severity, finding.gateway_time) == (
        AlertKind.SECURITY,
        Severity.MEDIUM,
        True,
    )
    assert finding.evidence.features == {"rejections": 5.0, "distinct_id_tags": 5.0}
    more = [rule.update(auth(at(5 + m / 10), f"D{m}", "Blocked")) for m in range(5)]
    assert more[-1] is not None
    assert more[-1].severity is Severity.HIGH


def test_one_wrong_card_tried_again_and_again_is_not_a_burst() -> None:
    rule = RejectedAuthorizations()
    assert [rule.update(auth(at(m), "MINE", "Expired")) for m in range(8)] == [None] * 8


def test_rejections_spread_out_and_accepted_cards_are_not_a_burst() -> None:
    rule = RejectedAuthorizations()
    assert [rule.update(auth(at(11 * m), f"C{m}", "Invalid")) for m in range(8)] == [None] * 8
    assert [rule.update(auth(at(200 + m), f"A{m}", "Accepted")) for m in range(8)] == [None] * 8


def test_a_burst_through_the_station_opens_and_goes_quiet_on_gateway_time() -> None:
    station = StationDiagnostics("CP1")
    alerts = []
    for m in range(5):
        version = "1.6" if m % 2 else "2.0.1"
        alerts += station.update(authorize(at(m), f"C{m}", "Invalid", version)).alerts
    assert kinds(alerts) == [("security", 0, "open")]
    assert station.clock is None  # Authorize has no station time
    later = authorize(at(40), "GOOD", "Accepted")
    assert kinds(station.update(later).alerts) == [("security", 0, "resolved")]


# --------------------------------------------------------------- energy without a session


def reading(minute: float, power_w: float, energy_wh: float) -> Reading:
    return Reading(time=at(minute), power_w=power_w, energy_wh=energy_wh)


def test_power_without_a_session_beyond_the_grace_period_fires() -> None:
    rule = UnexplainedEnergy()
    results = [rule.update("CP1", 1, reading(m, 7000, 1000 + 120 * m)) for m in range(7)]
    assert results[:5] == [None] * 5
    finding = results[5]
    assert finding is not None
    assert (finding.connector_id, finding.severity, finding.gateway_time) == (
        1,
        Severity.HIGH,
        False,
    )
    assert finding.evidence.features["minutes_without_session"] == 5.0
    assert finding.evidence.features["power_w"] == 7000


def test_a_rising_register_without_power_readings_fires_too() -> None:
    rule = UnexplainedEnergy()
    results = [
        rule.update("CP1", 2, Reading(time=at(m), energy_wh=1000 + 50 * m)) for m in range(7)
    ]
    assert results[-1] is not None
    assert results[-1].evidence.features["register_rise_wh"] == 50


def test_energy_inside_a_session_and_idle_noise_are_nothing() -> None:
    rule = UnexplainedEnergy()
    rule.started("7", 1)
    assert [rule.update("CP1", 1, reading(m, 7000, 1000 + 120 * m)) for m in range(20)] == [
        None
    ] * 20
    rule.ended("7", None, at(20))
    late = reading(19.5, 7000, 3300)  # the session's last reading, delivered late
    assert rule.update("CP1", 1, late) is None
    idle = [rule.update("CP1", 1, reading(21 + m, 40, 3400 + m)) for m in range(30)]
    assert idle == [None] * 30
    # The station meter (EVSE 0) includes the station's own use.
    assert [rule.update("CP1", 0, reading(m, 5000, 100 * m)) for m in range(20)] == [None] * 20


def test_a_short_blip_of_power_resets() -> None:
    rule = UnexplainedEnergy()
    pattern = [7000, 7000, 7000, 0] * 4
    assert [rule.update("CP1", 1, reading(m, p, 1000)) for m, p in enumerate(pattern)] == [
        None
    ] * 16


def test_energy_without_a_session_through_the_station_and_a_late_start_or_end() -> None:
    station = StationDiagnostics("CP1")
    station.update(start(1, 0, 5))
    for m in range(1, 20):
        assert station.update(meter(1, m, 7000, 120 * m)).alerts == []
    station.update(stop(20, 5, 2400))
    alerts = []
    for m in range(21, 30):  # the contactor stays closed after the session
        alerts += station.update(meter(1, m, 7000, 2400 + 120 * (m - 20))).alerts
    assert kinds(alerts) == [("security", 1, "open")]
    assert alerts[0].first_seen == at(26)
    # Readings that carry a transaction id explain themselves (a start we did not see).
    for m in range(30, 50):
        assert station.update(meter(1, m, 7000, 2400 + 120 * (m - 20), tx=6)).alerts == []
    resolved = station.update(meter(2, 60, 0, 0)).alerts
    assert kinds(resolved) == [("security", 1, "resolved")]


# --------------------------------------------------------------------------- security events


@pytest.mark.parametrize(
    ("event_type", "severity"),
    [
        ("TamperDetectionActivated", Severity.CRITICAL),
        ("InvalidFirmwareSignature", Severity.HIGH),
        ("InvalidFirmwareSigningCertificate", Severity.HIGH),
        ("InvalidCsmsCertificate", Severity.HIGH),
        ("InvalidCentralSystemCertificate", Severity.HIGH),  # the 1.6 whitepaper's name
        ("InvalidTLSVersion", Severity.HIGH),
        ("InvalidTLSCipherSuite", Severity.HIGH),
        ("AttemptedReplayAttacks", Severity.HIGH),
        ("SecurityLogWasCleared", Severity.HIGH),
        ("InvalidChargingStationCertificate", Severity.MEDIUM),
        ("MaintenanceLoginFailed", Severity.MEDIUM),
        ("invalidCSMSCertificate", Severity.HIGH),  # spelled as some stations do
    ],
)
def test_security_events_of_concern(event_type: str, severity: Severity) -> None:
    finding = security_event_finding(
        SecurityEvent(charge_point_id="CP1", event_type=event_type, timestamp=at(0))
    )
    assert finding is not None
    assert (finding.kind, finding.severity, finding.connector_id) == (
        AlertKind.SECURITY,
        severity,
        0,
    )
    assert event_type in finding.evidence.summary


@pytest.mark.parametrize(
    "event_type",
    [
        "FirmwareUpdated",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SettingSystemTime",
        "MaintenanceLoginAccepted",
        "FailedToAuthenticateAtCsms",
        "ReconfigurationOfSecurityParameters",
        "AcmeVendorEvent",
    ],
)
def test_routine_security_events_are_nothing(event_type: str) -> None:
    event = SecurityEvent(charge_point_id="CP1", event_type=event_type, timestamp=at(0))
    assert security_event_finding(event) is None


def test_memory_exhaustion_is_a_controller_fault() -> None:
    event = SecurityEvent(charge_point_id="CP1", event_type="MemoryExhaustion", timestamp=at(0))
    finding = security_event_finding(event)
    assert finding is not None
    assert finding.kind is AlertKind.CONTROLLER_FAULT
    assert all(k == k.lower() for k in SECURITY_EVENTS)


def test_a_1_6_security_event_through_the_station() -> None:
    station = StationDiagnostics("CP1")
    alerts = station.update(security_event(0, "InvalidFirmwareSignature", "1.6")).alerts
    assert kinds(alerts) == [("security", 0, "open")]
    assert alerts[0].severity is Severity.HIGH
    assert station.clock == at(0)
    assert station.update(security_event(1, "FirmwareUpdated", "1.6")).alerts == []


# --------------------------------------------------------------------------- state


def test_the_station_with_security_state_survives_pickling() -> None:
    station = StationDiagnostics("CP1")
    station.update(start(1, 0, 5))
    station.update(stop(1, 5, 0))
    for m in range(4):
        station.update(authorize(at(m), f"C{m}", "Invalid"))
    station.update(gateway_alert(FAILED_LOGINS, at(2)))
    for m in range(2, 6):
        station.update(meter(1, m, 7000, 120 * m))
    copy = pickle.loads(pickle.dumps(station))
    mine = ("rejections", "energy", "success", "book", "clock", "received")
    assert [getattr(copy, name) for name in mine] == [getattr(station, name) for name in mine]
    # Both go on the same way: the fifth rejection and the sixth minute of energy.
    for s in (station, copy):
        s.update(authorize(at(6), "C9", "Invalid"))
    follow = [s.update(meter(1, 8, 7000, 960)).alerts for s in (station, copy)]
    assert follow[0] == follow[1]
    assert {a.status for a in follow[0]} <= {AlertStatus.OPEN}
    assert len(pickle.dumps(copy)) < 20_000


def test_a_lost_end_does_not_hide_energy_without_a_session_for_good() -> None:
    rule = UnexplainedEnergy()
    rule.started("1", 1)
    rule.started("2", 1)  # the end of 1 never came
    rule.ended("2", None, at(0))
    results = [rule.update("CP1", 1, reading(1 + m, 7000, 1000 + 120 * m)) for m in range(7)]
    assert results[-1] is not None
    assert rule.evse_of == {}
