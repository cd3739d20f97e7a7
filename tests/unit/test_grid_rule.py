"""The supply rule (EN 50160 band, lost phases) and the attribution of an even voltage
drop to the supply rather than to a contactor."""

from __future__ import annotations

import math
import pickle
import random
from datetime import timedelta

from bus.alerts import AlertKind
from models.connector import ConnectorModel
from models.grid import GridRule
from models.readings import Reading
from models.rules import Clear, Finding
from tests.support.connectors import T0, contactor_wear, stream, weak_supply

MINUTE = timedelta(minutes=1)


def reading(minute: int, *volts: float) -> Reading:
    return Reading(time=T0 + minute * MINUTE, energy_wh=0.0, power_w=0.0, voltages_v=volts)


def feed(rule: GridRule, readings: list[Reading]) -> list[Finding | Clear]:
    return [r for x in readings if (r := rule.update("CP1", x)) is not None]


def test_a_healthy_supply_over_two_weeks_gives_nothing() -> None:
    rng = random.Random(3)
    readings = [
        reading(m, *(231 + 12 * math.sin(2 * math.pi * m / 1440) + rng.gauss(0, 1) for _ in "123"))
        for m in range(0, 14 * 1440, 5)
    ]
    assert feed(GridRule(), readings) == []


def test_one_dip_is_no_finding_two_in_a_row_are() -> None:
    rule = GridRule()
    assert feed(rule, [reading(0, 230, 230, 230), reading(5, 200, 229, 230)]) == []
    assert feed(rule, [reading(10, 230, 231, 230), reading(15, 201, 230, 230)]) == []
    [finding] = feed(rule, [reading(20, 199, 230, 231)])
    assert isinstance(finding, Finding)
    assert (finding.kind, finding.connector_id, finding.at) == (
        AlertKind.GRID_IRREGULARITY,
        0,
        T0 + 20 * MINUTE,
    )
    assert "lowest 199.0 V" in finding.evidence.summary


def test_a_swell_is_found_and_clears_after_three_readings_in_the_band() -> None:
    rule = GridRule()
    swell = feed(rule, [reading(0, 262, 261, 263), reading(5, 262, 262, 262)])
    assert [f.kind for f in swell if isinstance(f, Finding)] == [AlertKind.GRID_IRREGULARITY]
    assert "highest 262.0 V" in swell[0].evidence.summary  # type: ignore[union-attr]
    back = feed(rule, [reading(10 + 5 * i, 231, 230, 232) for i in range(3)])
    assert len(back) == 1
    assert isinstance(back[0], Clear)
    assert back[0].kinds == {AlertKind.GRID_IRREGULARITY}


def test_a_lost_phase_is_high_a_single_phase_station_and_a_dead_supply_are_nothing() -> None:
    rule = GridRule()
    found = feed(rule, [reading(0, 231, 230, 0.4), reading(5, 230, 231, 0.2)])
    assert [f.severity.value for f in found if isinstance(f, Finding)] == ["high"]
    assert "phase of the supply is lost" in found[0].evidence.summary  # type: ignore[union-attr]
    assert feed(GridRule(), [reading(m, 230.5) for m in range(0, 600, 5)]) == []
    assert feed(GridRule(), [reading(m, 0.0, 0.0, 0.0) for m in range(0, 60, 5)]) == []


def test_the_rule_state_pickles() -> None:
    rule = GridRule()
    feed(rule, [reading(0, 199, 230, 230)])
    assert pickle.loads(pickle.dumps(rule)) == rule


def _kinds(readings: list[Reading]) -> set[AlertKind]:
    model = ConnectorModel.default()
    return {f.kind for x in readings for f in model.update("CP1", 1, x) if isinstance(f, Finding)}


def test_an_even_drop_under_load_is_the_supply_not_the_contactor() -> None:
    kinds = _kinds(stream(6, seed=11, fault=weak_supply))
    assert AlertKind.GRID_IRREGULARITY in kinds
    assert AlertKind.CONTACTOR_DEGRADATION not in kinds


def test_a_drop_on_one_pole_stays_a_contactor() -> None:
    assert _kinds(stream(6, seed=11, fault=contactor_wear)) == {AlertKind.CONTACTOR_DEGRADATION}
