"""Deterministic fault rules, the alert contract and the alert lifecycle of a station."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from bus.alerts import (
    AlertKind,
    AlertStatus,
    Evidence,
    FaultAlert,
    Severity,
    alert_id,
    decode_fault_alert,
    encode_fault_alert,
)
from bus.normalized import ConnectorStatus
from models.alerting import AlertBook
from models.rules import (
    ACTIONS,
    ERROR_CODES,
    STATUS_DETECTORS,
    STATUS_KINDS,
    Clear,
    Finding,
    RegisterRule,
    status_findings,
)

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def status(
    code: str | None, state: str = "Faulted", minutes: float = 0, connector: int = 1
) -> ConnectorStatus:
    return ConnectorStatus(
        charge_point_id="CP1",
        evse_id=connector,
        connector_id=connector,
        status=state,
        ocpp_status=state,
        error_code=code,
        timestamp=at(minutes),
    )


def finding(
    minutes: float,
    kind: AlertKind = AlertKind.CONNECTOR_OVERHEATING,
    severity: Severity = Severity.MEDIUM,
    detector: str = "model:hst",
    connector: int = 1,
) -> Finding:
    return Finding(
        "CP1",
        connector,
        kind,
        severity,
        at(minutes),
        detector,
        Evidence(at=at(minutes), summary=f"at {minutes}"),
    )


# ----------------------------------------------------------------------------- contract


def test_every_kind_has_a_recommended_action() -> None:
    assert set(ACTIONS) == set(AlertKind)
    assert all(text.strip() for text in ACTIONS.values())


def test_alert_ids_are_stable_and_distinct() -> None:
    one = alert_id("CP1", 1, AlertKind.METER_FAULT, T0)
    assert one == alert_id("CP1", 1, AlertKind.METER_FAULT, T0.astimezone(UTC))
    others = {
        alert_id("CP2", 1, AlertKind.METER_FAULT, T0),
        alert_id("CP1", 2, AlertKind.METER_FAULT, T0),
        alert_id("CP1", 1, AlertKind.GROUND_FAULT, T0),
        alert_id("CP1", 1, AlertKind.METER_FAULT, at(1)),
    }
    assert one not in others
    assert len(others) == 4


def test_an_alert_with_an_unknown_kind_is_rejected() -> None:
    book = AlertBook()
    alert = book.observe(finding(0))
    assert alert is not None
    raw = msgspec.json.decode(encode_fault_alert(alert))
    raw["alert_kind"] = "made_up"
    with pytest.raises(msgspec.ValidationError):
        decode_fault_alert(msgspec.json.encode(raw))


def test_a_newer_producer_field_is_tolerated() -> None:
    alert = AlertBook().observe(finding(0))
    assert alert is not None
    raw = msgspec.json.decode(encode_fault_alert(alert))
    raw["added_later"] = 1
    assert decode_fault_alert(msgspec.json.encode(raw)) == alert


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_raises_its_kind(code: str) -> None:
    [result] = status_findings(status(code, "Faulted"))
    assert isinstance(result, Finding)
    assert (result.kind, result.severity) == ERROR_CODES[code]
    assert code in result.evidence.summary
    assert result.at == T0


def test_ev_communication_error_is_the_vehicle_not_a_station_fault() -> None:
    [result] = status_findings(status("EVCommunicationError", "SuspendedEVSE"))
    assert isinstance(result, Finding)
    assert result.kind is AlertKind.EV_COMM_ERROR
    assert result.severity is Severity.LOW


def test_faulted_without_an_error_code_is_a_controller_fault() -> None:
    for code in (None, "NoError"):
        [result] = status_findings(status(code, "Faulted"))
        assert isinstance(result, Finding)
        assert result.kind is AlertKind.CONTROLLER_FAULT


def test_a_healthy_status_clears_every_status_kind() -> None:
    [result] = status_findings(status("NoError", "Available", connector=2))
    assert result == Clear("CP1", 2, T0, STATUS_KINDS, STATUS_DETECTORS)


def test_register_rule_needs_several_frozen_readings() -> None:
    rule = RegisterRule(frozen_readings=3)
    results = [rule.update("CP1", 1, at(m), {"register_ratio": 0.0}) for m in range(4)]
    assert results[:2] == [None, None]
    assert isinstance(results[2], Finding)
    assert results[2].detector == "rule:frozen_register"
    assert results[2].kind is AlertKind.METER_FAULT


def test_register_rule_clears_when_the_register_moves_again() -> None:
    rule = RegisterRule(frozen_readings=2)
    rule.update("CP1", 1, at(0), {"register_ratio": 0.0})
    rule.update("CP1", 1, at(1), {"register_ratio": 0.0})
    cleared = rule.update("CP1", 1, at(2), {"register_ratio": 1.0})
    assert cleared == Clear("CP1", 1, at(2), frozenset({AlertKind.METER_FAULT}))
    assert rule.update("CP1", 1, at(3), {"register_ratio": 1.0}) is None


def test_one_frozen_reading_then_a_normal_one_is_nothing() -> None:
    rule = RegisterRule(frozen_readings=2)
    assert rule.update("CP1", 1, at(0), {"register_ratio": 0.0}) is None
    assert rule.update("CP1", 1, at(1), {"register_ratio": 1.0}) is None
    assert rule.update("CP1", 1, at(2), {"register_ratio": 0.0}) is None


def test_register_jump_fires_at_once() -> None:
    result = RegisterRule().update("CP1", 1, at(0), {"register_ratio": 5.0})
    assert isinstance(result, Finding)
    assert result.detector == "rule:register_jump"


def test_register_rule_ignores_readings_without_the_feature() -> None:
    assert RegisterRule().update("CP1", 1, at(0), {"delivered_ratio": 1.0}) is None


# ----------------------------------------------------------------------------- lifecycle


def test_first_finding_opens_an_alert_with_its_action() -> None:
    alert = AlertBook().observe(finding(0))
    assert isinstance(alert, FaultAlert)
    assert alert.status is AlertStatus.OPEN
    assert (alert.first_seen, alert.last_seen) == (T0, T0)
    assert alert.recommended_action == ACTIONS[AlertKind.CONNECTOR_OVERHEATING]
    assert alert.alert_id == alert_id("CP1", 1, AlertKind.CONNECTOR_OVERHEATING, T0)


def test_repeated_findings_give_no_repeated_alert() -> None:
    book = AlertBook(update_every=timedelta(minutes=15))
    versions = [book.observe(finding(m)) for m in range(0, 60)]
    published = [v for v in versions if v is not None]
    assert [v.last_seen for v in published] == [at(0), at(15), at(30), at(45)]
    assert len({v.alert_id for v in published}) == 1


def test_a_higher_severity_is_published_at_once() -> None:
    book = AlertBook()
    book.observe(finding(0, severity=Severity.MEDIUM))
    assert book.observe(finding(1, severity=Severity.MEDIUM)) is None
    escalated = book.observe(finding(2, severity=Severity.CRITICAL))
    assert escalated is not None
    assert escalated.severity is Severity.CRITICAL
    lower = book.observe(finding(20, severity=Severity.LOW))
    assert lower is not None
    assert lower.severity is Severity.CRITICAL


def test_distinct_connectors_and_kinds_are_distinct_alerts() -> None:
    book = AlertBook()
    a = book.observe(finding(0))
    b = book.observe(finding(0, connector=2))
    c = book.observe(finding(0, kind=AlertKind.CABLE_DAMAGE))
    assert a is not None
    assert b is not None
    assert c is not None
    assert len({a.alert_id, b.alert_id, c.alert_id}) == 3


def test_a_late_finding_changes_nothing() -> None:
    book = AlertBook()
    book.observe(finding(10))
    before = pickle.dumps(book)
    assert book.observe(finding(5)) is None
    assert pickle.dumps(book) == before


def test_a_finding_at_the_same_instant_only_counts_when_it_escalates() -> None:
    book = AlertBook()
    book.observe(finding(10, severity=Severity.MEDIUM))
    assert book.observe(finding(10, severity=Severity.MEDIUM)) is None
    raised = book.observe(finding(10, severity=Severity.HIGH))
    assert raised is not None
    assert raised.severity is Severity.HIGH


def test_a_clear_with_detectors_resolves_only_what_those_rules_raised() -> None:
    book = AlertBook()
    comm = AlertKind.COMM_DEGRADATION
    book.observe(finding(0, kind=comm, detector="rule:comm_offline", connector=0))
    status_clear = Clear("CP1", 0, at(5), frozenset({comm}), STATUS_DETECTORS)
    assert book.clear(status_clear) == []
    [resolved] = book.clear(
        Clear("CP1", 0, at(6), frozenset({comm}), frozenset({"rule:comm_offline"}))
    )
    assert resolved.resolved_at == at(6)


def test_model_alerts_resolve_after_a_quiet_period() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    book.observe(finding(0))
    book.observe(finding(3))
    assert book.tick(at(32)) == []
    [resolved] = book.tick(at(33))
    assert resolved.status is AlertStatus.RESOLVED
    assert (resolved.last_seen, resolved.resolved_at) == (at(3), at(33))
    assert book.open == {}


def test_rule_alerts_wait_for_the_station_to_clear_them() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    book.observe(finding(0, kind=AlertKind.GROUND_FAULT, detector="rule:error_code"))
    assert book.tick(at(600)) == []
    other_connector = Clear("CP1", 2, at(601), STATUS_KINDS)
    assert book.clear(other_connector) == []
    [resolved] = book.clear(Clear("CP1", 1, at(602), STATUS_KINDS))
    assert resolved.resolved_at == at(602)


def test_a_rule_finding_can_ask_to_resolve_when_quiet_and_ignores_clears() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    base = finding(0, kind=AlertKind.CONTROLLER_FAULT, detector="rule:first_try_success")
    book.observe(dataclasses.replace(base, resolves="quiet"))
    assert book.clear(Clear("CP1", 1, at(1), STATUS_KINDS)) == []
    assert book.tick(at(29)) == []
    [resolved] = book.tick(at(30))
    assert resolved.resolved_at == at(30)


def test_gateway_timed_alerts_go_quiet_on_the_gateway_clock_only() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    security = finding(0, kind=AlertKind.SECURITY, detector="rule:gateway_x")
    book.observe(dataclasses.replace(security, resolves="quiet", gateway_time=True))
    book.observe(finding(0))  # a model alert on telemetry time
    [model] = book.tick(at(600), at(29))
    assert model.alert_kind is AlertKind.CONNECTOR_OVERHEATING
    assert book.tick(at(700), None) == []
    [resolved] = book.tick(None, at(30))
    assert (resolved.alert_kind, resolved.resolved_at) == (AlertKind.SECURITY, at(30))


def test_a_finding_on_the_other_clock_leaves_an_open_alert_on_its_own() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    gateway = finding(0, kind=AlertKind.SECURITY, detector="rule:gateway_x", severity=Severity.LOW)
    book.observe(dataclasses.replace(gateway, resolves="quiet", gateway_time=True))
    telemetry = finding(500, kind=AlertKind.SECURITY, detector="rule:security_event")
    assert book.observe(dataclasses.replace(telemetry, severity=Severity.CRITICAL)) is None
    [resolved] = book.tick(at(500), at(30))  # quiet on the gateway's clock all the same
    assert resolved.severity is Severity.LOW
    opened = book.observe(dataclasses.replace(telemetry, at=at(501)))
    assert opened is not None
    assert opened.first_seen == at(501)


def test_a_clear_older_than_the_last_finding_does_not_resolve() -> None:
    book = AlertBook()
    book.observe(finding(10, kind=AlertKind.GROUND_FAULT, detector="rule:error_code"))
    assert book.clear(Clear("CP1", 1, at(5), STATUS_KINDS)) == []


def test_a_fault_after_resolution_is_a_new_alert() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    first = book.observe(finding(0))
    book.tick(at(31))
    again = book.observe(finding(40))
    assert first is not None
    assert again is not None
    assert again.alert_id != first.alert_id
    assert again.first_seen == at(40)


def test_replaying_the_same_findings_gives_the_same_versions() -> None:
    def run() -> list[FaultAlert]:
        book = AlertBook()
        out = [v for m in range(0, 90, 3) if (v := book.observe(finding(m))) is not None]
        return out + book.tick(at(200))

    assert run() == run()
    assert run()[-1].status is AlertStatus.RESOLVED
