"""First-try session success (models.sessions_success) and its path through StationDiagnostics."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bus.alerts import AlertKind, Severity
from bus.envelope import Envelope
from bus.normalized import ConnectorStatus, TransactionEnd, TransactionStart, TransactionUpdate
from models.readings import Reading
from models.sessions_success import SessionSuccess
from models.station import StationDiagnostics
from tests.support.builders import iso, ocpp_call

T0 = datetime(2026, 7, 1, 8, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def begin(
    success: SessionSuccess, tx: str, evse: int, minute: float, auth: str = "Accepted"
) -> None:
    success.start(
        TransactionStart(
            charge_point_id="CP1",
            transaction_id=tx,
            evse_id=evse,
            connector_id=evse,
            timestamp=at(minute),
            meter_start_wh=Decimal(1000),
            auth_status=auth,
        )
    )


def finish(
    success: SessionSuccess, tx: str, minute: float, stop_wh: int, reason: str = "Local"
) -> None:
    success.end(
        TransactionEnd(
            charge_point_id="CP1",
            transaction_id=tx,
            evse_id=None,
            connector_id=None,
            timestamp=at(minute),
            meter_stop_wh=Decimal(stop_wh),
            stopped_reason=reason,
        )
    )


def status(success: SessionSuccess, evse: int, minute: float, state: str) -> None:
    success.status(
        ConnectorStatus(
            charge_point_id="CP1",
            evse_id=evse,
            connector_id=evse,
            status=state,
            ocpp_status=state,
            timestamp=at(minute),
        )
    )


def session(
    success: SessionSuccess, n: int, evse: int, *, stop_wh: int, reason: str = "Local"
) -> None:
    """One attempt starting at minute 100 n, ending an hour later."""
    begin(success, f"t{evse}-{n}", evse, 100 * n)
    finish(success, f"t{evse}-{n}", 100 * n + 60, stop_wh, reason)


def test_sessions_that_deliver_energy_are_successes_whoever_ends_them() -> None:
    success = SessionSuccess()
    for n, reason in enumerate(["Local", "EVDisconnected", "StoppedByEV", "Remote", "SoftReset"]):
        session(success, n, 1, stop_wh=9000, reason=reason)
    assert success.rate(1) == 1.0
    assert success.findings("CP1", at(1000)) == []


def test_starts_that_never_deliver_energy_fail_and_raise_contactor_degradation() -> None:
    success = SessionSuccess()
    for n in range(4):
        session(success, n, 1, stop_wh=1002, reason="EVDisconnected")
    assert success.rate(1) == 0.0
    assert success.findings("CP1", at(500)) == []  # fewer than min_attempts
    session(success, 4, 1, stop_wh=1000)
    [finding] = success.findings("CP1", at(500))
    assert (finding.kind, finding.connector_id, finding.severity) == (
        AlertKind.CONTACTOR_DEGRADATION,
        1,
        Severity.HIGH,
    )
    assert finding.evidence.features == {"first_try_success": 0.0, "attempts": 5.0, "failed": 5.0}
    assert "no energy delivered (ended Local)" in finding.evidence.summary
    assert finding.waits_for_clear is False


@pytest.mark.parametrize("reason", ["EmergencyStop", "PowerLoss", "Reboot", "GroundFault"])
def test_sessions_the_station_stops_fail_even_after_energy(reason: str) -> None:
    success = SessionSuccess(min_attempts=3)
    for n in range(3):
        session(success, n, 2, stop_wh=5000, reason=reason)
    [finding] = success.findings("CP1", at(500))
    assert f"stopped by the station ({reason})" in finding.evidence.summary


def test_other_fails_only_when_early() -> None:
    success = SessionSuccess()
    begin(success, "early", 1, 0)
    finish(success, "early", 4, 3000, "Other")
    begin(success, "late", 1, 100)
    finish(success, "late", 190, 9000, "Other")
    assert list(success.outcomes[1]) == [False, True]


def test_one_failure_among_healthy_sessions_is_nothing() -> None:
    success = SessionSuccess()
    session(success, 0, 1, stop_wh=1000)
    for n in range(1, 10):
        session(success, n, 1, stop_wh=8000)
    assert success.rate(1) == 0.9
    assert success.findings("CP1", at(2000)) == []


def test_the_driver_or_the_ev_declining_is_no_attempt() -> None:
    success = SessionSuccess()
    for n, reason in enumerate(["DeAuthorized", "Timeout", "LocalOutOfCredit", "MasterPass"]):
        session(success, n, 1, stop_wh=1000, reason=reason)
    begin(success, "full", 1, 900)  # a full battery: SuspendedEV, no energy
    status(success, 1, 901, "SuspendedEV")
    finish(success, "full", 960, 1000, "EVDisconnected")
    begin(success, "refused", 1, 1000, auth="Invalid")
    finish(success, "refused", 1001, 1000, "DeAuthorized")
    assert success.outcomes == {}


def test_a_start_stuck_in_preparing_fails_once_at_the_limit() -> None:
    success = SessionSuccess()
    status(success, 1, 0, "Preparing")
    begin(success, "t", 1, 0)
    success.tick(at(4))
    assert success.outcomes == {}
    success.tick(at(5))
    success.tick(at(6))
    finish(success, "t", 30, 1000)
    assert list(success.outcomes[1]) == [False]
    assert success.last_failure[1] == "still Preparing after 5 minutes"


def test_a_start_that_charges_or_sends_no_status_is_not_stuck() -> None:
    success = SessionSuccess()
    status(success, 1, 0, "Preparing")
    begin(success, "charging", 1, 0)
    status(success, 1, 1, "Charging")
    begin(success, "quiet", 2, 0)  # no status at all on EVSE 2: proves nothing
    success.tick(at(30))
    assert success.outcomes == {}


def test_readings_and_2_0_1_charging_states_count_as_delivery() -> None:
    success = SessionSuccess()
    success.start(
        TransactionStart(
            charge_point_id="CP1", transaction_id="a", evse_id=1, connector_id=1, timestamp=at(0)
        )
    )  # 2.0.1 Started without a Transaction.Begin register
    success.update(
        TransactionUpdate(
            charge_point_id="CP1",
            transaction_id="a",
            evse_id=1,
            connector_id=1,
            timestamp=at(1),
            charging_state="Charging",
        )
    )
    success.reading(1, Reading(time=at(2), power_w=7000))
    finish(success, "a", 60, 0, "EVDisconnected")
    assert list(success.outcomes[1]) == [True]


def test_a_station_wide_drop_is_a_controller_fault_not_per_connector() -> None:
    success = SessionSuccess()
    for n in range(4):
        session(success, n, 1, stop_wh=1000)
        session(success, n, 2, stop_wh=1000 if n else 9000)
    [finding] = success.findings("CP1", at(900))
    assert (finding.kind, finding.connector_id) == (AlertKind.CONTROLLER_FAULT, 0)
    assert "7 of the last 8 starts failed on 2 connectors" in finding.evidence.summary


def test_the_rate_recovers_and_the_finding_stops() -> None:
    success = SessionSuccess(window=10)
    for n in range(5):
        session(success, n, 1, stop_wh=1000)
    assert success.findings("CP1", at(500))
    for n in range(5, 12):
        session(success, n, 1, stop_wh=9000)
    assert success.rate(1) == 0.7
    assert success.findings("CP1", at(1300)) == []


def test_attempts_whose_end_never_came_are_dropped() -> None:
    success = SessionSuccess()
    begin(success, "lost", 1, 0)
    success.tick(at(3 * 24 * 60))
    assert success.attempts == {}


# --------------------------------------------------------------------------- through the station


def call(action: str, payload: dict[str, Any], minute: float, response: dict[str, Any]) -> Envelope:
    return ocpp_call("CP1", action, payload, at=at(minute), version="1.6", response=response)


def attempt(station: StationDiagnostics, n: int, *, energy_wh: int) -> list[Any]:
    """A 1.6 session on connector 1 at minute 100 n: statuses, start, readings, stop."""
    t = 100 * n
    register = 10_000 * n
    envelopes = [
        call(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Preparing",
                "timestamp": iso(at(t)),
            },
            t,
            {},
        ),
        call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": register, "timestamp": iso(at(t))},
            t,
            {"transactionId": n + 1, "idTagInfo": {"status": "Accepted"}},
        ),
        call(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Charging",
                "timestamp": iso(at(t + 1)),
            },
            t + 1,
            {},
        ),
        call(
            "StopTransaction",
            {
                "transactionId": n + 1,
                "meterStop": register + energy_wh,
                "timestamp": iso(at(t + 30)),
                "reason": "EVDisconnected",
            },
            t + 30,
            {},
        ),
        call(
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [
                    {
                        "timestamp": iso(at(t + 31)),
                        "sampledValue": [{"value": str(register + energy_wh)}],
                    }
                ],
            },
            t + 31,
            {},
        ),
    ]
    return [a for e in envelopes for a in station.update(e).alerts]


def test_failed_starts_through_the_station_open_then_resolve_after_recovery() -> None:
    station = StationDiagnostics("CP1")
    alerts = [a for n in range(5) for a in attempt(station, n, energy_wh=0)]
    assert [(a.alert_kind, a.connector_id, a.status.value) for a in alerts] == [
        (AlertKind.CONTACTOR_DEGRADATION, 1, "open")
    ]
    assert alerts[0].detector == "rule:first_try_success"
    # A healthy status report does not clear it (it is no status rule)...
    later = [a for n in range(5, 10) for a in attempt(station, n, energy_wh=9000)]
    assert later
    assert all(a.status.value == "open" for a in later)
    # ...recovery does: 4 of the last 10 failed (at the threshold) from the stop at minute
    # 1030 on, and the last finding (minute 1001) is 30 minutes old at minute 1031.
    resolved = attempt(station, 10, energy_wh=9000)
    assert station.success.rate(1) == 0.6
    assert [a.status.value for a in resolved] == ["open", "resolved"]  # an update, then
    assert resolved[-1].resolved_at == at(1031)
    [health] = station.health()
    assert health.features["first_try_success"] == 0.6


def test_the_success_state_survives_pickling() -> None:
    station = StationDiagnostics("CP1")
    for n in range(3):
        attempt(station, n, energy_wh=0)
    copy = pickle.loads(pickle.dumps(station))
    assert copy.success == station.success
    assert attempt(copy, 3, energy_wh=0) == attempt(station, 3, energy_wh=0)
    assert copy.success == station.success


def test_health_snapshots_carry_the_rate_next_to_the_models_view() -> None:
    station = StationDiagnostics("CP1")
    attempt(station, 0, energy_wh=9000)
    attempt(station, 1, energy_wh=0)
    sampled = [
        {"value": "30000", "measurand": "Energy.Active.Import.Register"},
        {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "230", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
    ]
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": iso(at(140)), "sampledValue": sampled}],
    }
    [health] = station.update(call("MeterValues", payload, 140, {})).health
    assert station.connectors[1].health("CP1", 1) is not None  # the model's own view
    assert (health.connector_id, health.phase) == (1, "warming_up")
    assert health.features["first_try_success"] == 0.5


def plug_in(success: SessionSuccess, tx: str, minute: float) -> None:
    """A 2.0.1 transaction started at plug-in, before any id token."""
    success.start(
        TransactionStart(
            charge_point_id="CP1",
            transaction_id=tx,
            evse_id=1,
            connector_id=1,
            timestamp=at(minute),
            meter_start_wh=Decimal(1000),
        )
    )


def token(success: SessionSuccess, tx: str, minute: float, auth: str) -> None:
    success.update(
        TransactionUpdate(
            charge_point_id="CP1",
            transaction_id=tx,
            evse_id=1,
            connector_id=1,
            id_tag="CARD",
            auth_status=auth,
            timestamp=at(minute),
        )
    )


def test_a_2_0_1_plug_in_start_is_an_attempt_only_once_its_token_is_accepted() -> None:
    success = SessionSuccess()
    status(success, 1, 0, "Preparing")
    plug_in(success, "walked-away", 0)
    success.tick(at(30))  # no token: not stuck, nobody asked for energy
    finish(success, "walked-away", 31, 1000, "EVDisconnected")
    plug_in(success, "refused", 40)
    token(success, "refused", 41, "Invalid")
    finish(success, "refused", 42, 1000, "EVDisconnected")
    assert success.outcomes == {}
    plug_in(success, "accepted", 50)
    token(success, "accepted", 51, "Accepted")
    finish(success, "accepted", 55, 1000, "EVDisconnected")
    assert list(success.outcomes[1]) == [False]


def test_an_ev_that_stops_drawing_after_a_few_minutes_is_a_success() -> None:
    success = SessionSuccess()
    begin(success, "short", 1, 0)
    status(success, 1, 1, "Charging")
    finish(success, "short", 3, 1300, "StoppedByEV")
    begin(success, "local", 1, 10)
    finish(success, "local", 12, 1200, "Local")
    assert list(success.outcomes[1]) == [True, True]


def test_a_new_start_on_the_evse_drops_an_attempt_whose_end_was_lost() -> None:
    success = SessionSuccess()
    begin(success, "lost", 1, 0)
    begin(success, "next", 1, 60)
    begin(success, "other-evse", 2, 60)
    assert set(success.attempts) == {"next", "other-evse"}
