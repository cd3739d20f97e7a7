"""Root-cause grouping in the alert book: one alert per broken connector."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from bus.alerts import AlertKind, AlertStatus, Evidence, FaultAlert, Severity
from models.alerting import AlertBook
from models.root_cause import CONSEQUENCES, NEVER_FOLDED, folds
from models.rules import Clear, Finding

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
K = AlertKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def finding(
    minutes: float,
    kind: AlertKind,
    detector: str = "model:deviation",
    connector: int = 1,
    severity: Severity = Severity.MEDIUM,
    resolves: str | None = None,
) -> Finding:
    return Finding(
        "CP1",
        connector,
        kind,
        severity,
        at(minutes),
        detector,
        Evidence(at=at(minutes), summary=f"{kind.value} at {minutes}."),
        resolves,
    )


def published(book: AlertBook, *findings: Finding) -> list[FaultAlert]:
    return [a for f in findings if (a := book.observe(f)) is not None]


def test_a_lost_phase_takes_the_connectors_phase_spread_as_its_own() -> None:
    book = AlertBook()
    grid = finding(0, K.GRID_IRREGULARITY, "rule:grid_voltage", connector=0)
    spread = [finding(m, K.CONTACTOR_DEGRADATION, connector=c) for m in (5, 10, 60) for c in (1, 2)]
    versions = published(book, grid, *spread)
    assert {v.alert_id for v in versions} == {versions[0].alert_id}
    assert all(v.alert_kind is K.GRID_IRREGULARITY for v in versions)
    # A new version when a consequence is new and later than the last version (the
    # second connector's, at the same instant, waits for the next one); none for repeats.
    assert [v.last_seen for v in versions] == [at(0), at(5)]
    later = book.observe(finding(70, K.GRID_IRREGULARITY, "rule:grid_voltage", connector=0))
    assert later is not None
    assert "Also seen: contactor degradation on connector 1 (model:deviation); " in (
        later.evidence.summary
    )
    assert "contactor degradation on connector 2" in later.evidence.summary


def test_a_faulted_status_without_a_code_is_folded_into_the_named_fault() -> None:
    book = AlertBook()
    named = finding(0, K.CONTACTOR_DEGRADATION, "rule:device_event", severity=Severity.CRITICAL)
    generic = finding(0.1, K.CONTROLLER_FAULT, "rule:error_code", severity=Severity.HIGH)
    versions = published(book, named, generic)
    assert [v.alert_kind for v in versions] == [K.CONTACTOR_DEGRADATION] * 2
    assert versions[-1].severity is Severity.CRITICAL
    assert "controller fault on connector 1 (rule:error_code)" in versions[-1].evidence.summary


def test_other_connectors_unrelated_kinds_and_safety_open_their_own_alerts() -> None:
    book = AlertBook()
    book.observe(finding(0, K.CONNECTOR_OVERHEATING, "rule:error_code", severity=Severity.HIGH))
    other_connector = book.observe(finding(1, K.CONTROLLER_FAULT, "rule:error_code", connector=2))
    unrelated = book.observe(finding(2, K.METER_FAULT, "rule:frozen_register"))
    ground = book.observe(finding(3, K.GROUND_FAULT, "rule:error_code"))
    assert other_connector is not None
    assert other_connector.alert_kind is K.CONTROLLER_FAULT
    assert unrelated is not None
    assert unrelated.alert_kind is K.METER_FAULT
    assert ground is not None
    assert ground.alert_kind is K.GROUND_FAULT


def test_a_model_alert_is_no_root() -> None:
    """A suspicion does not swallow findings: only the station's word (a rule's alert
    waiting for its clear) makes a connector broken."""
    book = AlertBook()
    book.observe(finding(0, K.CONNECTOR_OVERHEATING))
    cable = book.observe(finding(1, K.CABLE_DAMAGE))
    assert cable is not None
    assert cable.alert_kind is K.CABLE_DAMAGE


def test_a_quiet_resolving_rule_is_no_root() -> None:
    book = AlertBook()
    book.observe(finding(0, K.CONTACTOR_DEGRADATION, "rule:first_try_success", resolves="quiet"))
    grid = book.observe(finding(1, K.GRID_IRREGULARITY, connector=1))
    assert grid is not None
    assert grid.alert_kind is K.GRID_IRREGULARITY


def test_a_rule_finding_makes_an_open_model_alert_wait_for_the_station() -> None:
    book = AlertBook(resolve_after=timedelta(minutes=30))
    book.observe(finding(0, K.CONTACTOR_DEGRADATION))
    book.observe(
        finding(20, K.CONTACTOR_DEGRADATION, "rule:device_event", severity=Severity.CRITICAL)
    )
    assert book.tick(at(120)) == []  # still Faulted: not quiet-resolved
    folded = book.observe(finding(121, K.CONTROLLER_FAULT, "rule:error_code"))
    assert folded is not None
    assert folded.alert_kind is K.CONTACTOR_DEGRADATION
    resolved = book.clear(
        Clear("CP1", 1, at(130), frozenset({K.CONTACTOR_DEGRADATION, K.CONTROLLER_FAULT}))
    )
    assert [a.status for a in resolved] == [AlertStatus.RESOLVED]


def test_after_the_root_resolves_consequences_open_alerts_again() -> None:
    book = AlertBook()
    book.observe(finding(0, K.GRID_IRREGULARITY, "rule:grid_voltage", connector=0))
    assert book.observe(finding(1, K.CONTACTOR_DEGRADATION)) is not None  # folded: a version
    book.clear(Clear("CP1", 0, at(2), frozenset({K.GRID_IRREGULARITY})))
    again = book.observe(finding(3, K.CONTACTOR_DEGRADATION))
    assert again is not None
    assert again.alert_kind is K.CONTACTOR_DEGRADATION
    assert again.first_seen == at(3)


def test_a_gateway_timed_finding_is_never_folded() -> None:
    book = AlertBook()
    book.observe(finding(0, K.CONTROLLER_FAULT, "rule:error_code", connector=0))
    comm = Finding(
        "CP1", 0, K.COMM_DEGRADATION, Severity.MEDIUM, at(1), "rule:comm_gap",
        Evidence(at=at(1), summary="gaps"), gateway_time=True,
    )  # fmt: skip
    alert = book.observe(comm)
    assert alert is not None
    assert alert.alert_kind is K.COMM_DEGRADATION


def test_grouping_survives_pickling_and_replays_identically() -> None:
    def run(book: AlertBook) -> list[FaultAlert]:
        first = published(book, finding(0, K.CABLE_DAMAGE, "rule:error_code"))
        book = pickle.loads(pickle.dumps(book))
        rest = [finding(m, K.CONNECTOR_OVERHEATING) for m in (1, 2, 3)]
        return first + published(book, *rest, finding(4, K.CONTACTOR_DEGRADATION))

    assert run(AlertBook()) == run(AlertBook())
    assert len({a.alert_id for a in run(AlertBook())}) == 1


def test_the_consequence_map_never_folds_safety_or_a_kind_into_itself() -> None:
    for root, kinds in CONSEQUENCES.items():
        assert root not in kinds
        assert not kinds & NEVER_FOLDED
    assert not folds(K.GRID_IRREGULARITY, 0, K.SECURITY, 1)
    assert not folds(K.GRID_IRREGULARITY, 0, K.GRID_IRREGULARITY, 1)


def test_a_late_rule_finding_still_makes_the_open_alert_a_root() -> None:
    """The station's fault report stamped a little before the model's last finding (its
    readings arrive first) still says the connector is broken."""
    book = AlertBook()
    book.observe(finding(0, K.CABLE_DAMAGE, resolves="clear"))
    book.observe(finding(10, K.CABLE_DAMAGE, resolves="clear"))
    assert book.observe(finding(8, K.CABLE_DAMAGE, "rule:device_event")) is None  # late
    folded = book.observe(finding(12, K.CONTROLLER_FAULT, "rule:error_code"))
    assert folded is not None
    assert folded.alert_kind is K.CABLE_DAMAGE


def test_a_broken_connector_takes_the_stations_supply_finding() -> None:
    """A pitted pole's drop under load puts that phase below the band: the supply rule,
    reading every connector's voltages, reports it on connector 0."""
    book = AlertBook()
    book.observe(finding(0, K.CONTACTOR_DEGRADATION, "rule:error_code", severity=Severity.HIGH))
    supply = book.observe(finding(5, K.GRID_IRREGULARITY, "rule:grid_voltage", connector=0))
    assert supply is not None
    assert supply.alert_kind is K.CONTACTOR_DEGRADATION
    assert "grid irregularity on connector 0" in supply.evidence.summary
