"""The fault model of one connector on synthetic streams: healthy variation (ambient day
cycle, load levels, sensor noise) gives nothing; each bent relation gives its kind."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from bus.alerts import AlertKind
from models.connector import FEATURE_KINDS, MODEL_FEATURES, ConnectorModel
from models.features import FEATURES
from models.readings import Reading
from models.rules import Clear, Finding
from tests.support.connectors import (
    Fault,
    cable_damage,
    contactor_wear,
    fault_start,
    frozen_register,
    overheating,
    stream,
)


def run(readings: list[Reading], model: ConnectorModel) -> list[Finding]:
    findings: list[Finding] = []
    for reading in readings:
        findings += [f for f in model.update("CP1", 1, reading) if isinstance(f, Finding)]
    return findings


FAULT_DAYS = 1.0


def fault_began(readings: list[Reading]) -> datetime:
    return fault_start(readings, FAULT_DAYS)


def test_a_healthy_connector_raises_nothing_over_two_weeks() -> None:
    for seed in range(10):
        assert run(stream(14, seed), ConnectorModel.default()) == [], seed


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (overheating, AlertKind.CONNECTOR_OVERHEATING),
        (contactor_wear, AlertKind.CONTACTOR_DEGRADATION),
        (cable_damage, AlertKind.CABLE_DAMAGE),
    ],
)
def test_a_progressive_fault_is_found_before_it_is_severe(fault: Fault, kind: AlertKind) -> None:
    readings = stream(6, seed=11, fault=fault)
    findings = run(readings, ConnectorModel.default())
    assert findings, "the fault was not found"
    assert {f.kind for f in findings} == {kind}
    assert findings[0].at >= fault_began(readings), "a finding before the fault began"
    # The fault is at full size (the hard failure) at the end of the stream.
    assert readings[-1].time - findings[0].at >= timedelta(hours=3)


def test_a_frozen_register_is_a_meter_fault_from_the_rule() -> None:
    findings = run(stream(3, seed=5, fault=frozen_register), ConnectorModel.default())
    assert findings
    assert findings[0].kind is AlertKind.METER_FAULT
    assert findings[0].detector == "rule:frozen_register"


def test_a_cold_connector_is_silent_while_it_learns() -> None:
    # A connector that is faulty from its first reading: nothing during the warm-up.
    readings = stream(2, seed=2, fault=overheating, fault_days=2.0)
    assert run(readings, ConnectorModel.default(warmup_period=timedelta(days=2))) == []


def test_evidence_names_the_top_feature_and_its_values() -> None:
    findings = run(stream(6, seed=11, fault=overheating), ConnectorModel.default())
    evidence = findings[0].evidence
    assert "temperature" in evidence.summary
    assert "temperature_rise_c_per_kw" in evidence.features
    assert evidence.scores["score"] >= 5 / 9


def test_every_feature_points_to_a_kind() -> None:
    assert set(FEATURE_KINDS) == set(FEATURES)
    assert set(MODEL_FEATURES) <= set(FEATURES)


def test_model_state_is_small_and_pickles_exactly() -> None:
    model = ConnectorModel.default()
    readings = stream(2, seed=3)
    run(readings[:-100], model)
    clone = pickle.loads(pickle.dumps(model))
    assert run(readings[-100:], model) == run(readings[-100:], clone)
    assert len(pickle.dumps(model)) < 4096


def _sessions(model: ConnectorModel, start: datetime, hours: int, ratio: float, taper: bool):
    """Hour-long sessions at 11 kW (one reading every 5 minutes, idle in between) whose
    register grows ``ratio`` times the power integral; with ``taper`` each falls 10 %
    per reading."""
    findings: list[Finding] = []
    energy = 0.0
    for hour in range(hours):
        t = start + timedelta(hours=hour)
        findings += run([Reading(time=t, energy_wh=energy, power_w=0.0, temperature_c=20.0)], model)
        power = 11000.0
        for step in range(1, 12):
            last, power = power, power * 0.9 if taper and step > 1 else 11000.0 + step % 2 * 50
            energy += ratio * (last + power) / 2 * 5 / 60
            reading = Reading(
                time=t + timedelta(minutes=5 * step), energy_wh=energy, power_w=power,
                temperature_c=30.0,
            )  # fmt: skip
            findings += run([reading], model)
    return findings


def test_the_register_ratio_is_judged_at_a_steady_load_only() -> None:
    """A taper's trapezoid misses the register by several percent: no meter fault; the
    same shortfall at a steady load is one."""
    t = datetime(2026, 7, 1, tzinfo=UTC)
    model = ConnectorModel.default(warmup=20, warmup_period=timedelta(hours=12))
    assert _sessions(model, t, 24, 1.0, taper=False) == []
    assert _sessions(model, t + timedelta(days=1), 6, 0.92, taper=True) == []
    steady = _sessions(model, t + timedelta(days=2), 2, 0.92, taper=False)
    assert steady
    assert {f.kind for f in steady} == {AlertKind.METER_FAULT}
    assert steady[0].detector == "model:deviation"


def test_persistence_counts_readings_that_point_to_one_kind() -> None:
    """Anomalous readings alternating between two kinds are noise, not a fault."""
    t = datetime(2026, 7, 1, tzinfo=UTC)
    model = ConnectorModel.default(warmup=20, warmup_period=timedelta(hours=12))
    assert _sessions(model, t, 24, 1.0, taper=False) == []
    findings: list[Finding] = []
    start, energy = t + timedelta(days=1), 0.0
    findings += run([Reading(time=start, energy_wh=energy, power_w=11000.0)], model)
    for i in range(1, 13):  # in turn: much too hot, then a register counting half
        hot = i % 2 == 1
        energy += 11000.0 * 5 / 60 * (1.0 if hot else 0.5)
        reading = Reading(
            time=start + timedelta(minutes=5 * i),
            energy_wh=energy,
            power_w=11000.0,
            temperature_c=60.0 if hot else 30.0,
        )
        findings += run([reading], model)
    assert findings == []


def test_a_feature_seen_only_early_in_sessions_warms_up_within_the_first_days() -> None:
    """Delivered/offered is judged in a run's first 20 minutes only: with readings every
    5 minutes that is ~4 samples a session, so its baseline must be usable after a few
    dozen, or a damaged cable goes unseen for a week."""
    readings = stream(5, seed=11, fault=cable_damage)[::5]
    findings = run(readings, ConnectorModel.default())
    assert {f.kind for f in findings} == {AlertKind.CABLE_DAMAGE}
    assert readings[-1].time - findings[0].at >= timedelta(hours=3)


def test_a_model_suspicion_resolves_under_load_not_while_idle() -> None:
    """A fault that shows under load says nothing while the connector is idle: the
    model's finding waits for its own clear, given after ``heal_after`` normal readings
    under load, for the kinds it suspected."""
    t = datetime(2026, 7, 1, tzinfo=UTC)
    model = ConnectorModel.default(warmup=20, warmup_period=timedelta(hours=12))
    assert _sessions(model, t, 24, 1.0, taper=False) == []
    found = _sessions(model, t + timedelta(days=1), 1, 0.9, taper=False)
    assert found
    assert all(f.resolves == "clear" for f in found)
    idle = t + timedelta(days=1, hours=6)  # hours later, idle: nothing
    assert run([Reading(time=idle, energy_wh=0.0, power_w=0.0, temperature_c=20.0)], model) == []
    results = []
    for step in range(1, 8):  # a healthy session again
        at = idle + timedelta(minutes=5 * step)
        reading = Reading(time=at, energy_wh=916.7 * step, power_w=11000.0, temperature_c=30.0)
        results += model.update("CP1", 1, reading)
    clears = [r for r in results if isinstance(r, Clear)]
    assert [c.kinds for c in clears] == [frozenset({AlertKind.METER_FAULT})]
    assert clears[0].detectors == frozenset({"model:deviation"})


def test_readings_without_a_kinds_features_do_not_heal_it() -> None:
    """Later in a session delivered/offered is not taken, at an unsteady load the register
    ratio is not judged: those readings say nothing about a damaged cable or a meter."""
    t = datetime(2026, 7, 1, tzinfo=UTC)
    model = ConnectorModel.default(warmup=20, warmup_period=timedelta(hours=12))
    assert _sessions(model, t, 24, 1.0, taper=False) == []
    assert _sessions(model, t + timedelta(days=1), 1, 0.9, taper=False)
    later = t + timedelta(days=1, hours=2)
    results = []
    for step in range(12):  # under load, no register: nothing about the meter
        reading = Reading(time=later + timedelta(minutes=5 * step), power_w=11000.0)
        results += model.update("CP1", 1, reading)
    assert results == []
    assert AlertKind.METER_FAULT in model.healthy
