"""The supply at a station: EN 50160's low-voltage band (230 V +-10 %, 207-253 V).

Every connector of a station hangs off the same supply, so the rule reads the phase
voltages of all of them, idle or loaded. ``readings_to_alert`` consecutive readings with
a phase outside the band (one can be a passing dip; EN 50160 judges 10-minute means)
give a station-level (connector 0) ``grid_irregularity`` finding; a phase below half the
nominal while another is in the band is a lost phase. ``readings_to_clear`` readings in
the band clear it. A single-phase station reports one voltage, so a phase it does not
use is never taken for a lost one.

>>> from datetime import UTC, datetime, timedelta
>>> from models.readings import Reading
>>> t = datetime(2026, 7, 1, tzinfo=UTC)
>>> rule = GridRule()
>>> def at(minutes, *volts):
...     reading = Reading(time=t + timedelta(minutes=minutes), energy_wh=0.0, power_w=0.0,
...         voltages_v=volts)
...     return rule.update("CP1", reading)
>>> at(0, 231.0, 229.5, 230.2), at(5, 199.0, 200.1, 198.7)
(None, None)
>>> finding = at(10, 198.0, 199.0, 197.5)
>>> finding.kind.value, finding.connector_id, finding.detector
('grid_irregularity', 0, 'rule:grid_voltage')
>>> finding.evidence.summary
'The supply voltage was outside 230 V +-10 % on 2 readings in a row (lowest 197.5 V).'
>>> [at(15 + 5 * i, 230.0, 231.0, 229.0) for i in range(3)][-1].kinds
frozenset({<AlertKind.GRID_IRREGULARITY: 'grid_irregularity'>})
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.alerts import AlertKind, Evidence, Severity
from models.features import NOMINAL_VOLTAGE_V
from models.readings import Reading
from models.rules import Clear, Finding

BAND = 0.10  # EN 50160: +-10 % of nominal
LOST_PHASE_RATIO = 0.5  # a phase below half the nominal is lost, not sagging
DETECTOR = "rule:grid_voltage"


@dataclass(slots=True)
class GridRule:
    """EN 50160 on the phase voltages of every reading of one station; picklable."""

    readings_to_alert: int = 2
    readings_to_clear: int = 3
    outside_run: int = 0
    inside_run: int = 0
    firing: bool = False

    def update(self, station_id: str, reading: Reading) -> Finding | Clear | None:
        volts = reading.voltages_v
        if not volts:
            return None
        low, high = NOMINAL_VOLTAGE_V * (1 - BAND), NOMINAL_VOLTAGE_V * (1 + BAND)
        lost = [v for v in volts if v < NOMINAL_VOLTAGE_V * LOST_PHASE_RATIO]
        if lost and len(lost) == len(volts):
            return None  # no voltage at all: a reading without supply says nothing of it
        if all(low <= v <= high for v in volts):
            self.outside_run = 0
            self.inside_run += 1
            if self.firing and self.inside_run >= self.readings_to_clear:
                self.firing = False
                return Clear(
                    station_id,
                    0,
                    reading.time,
                    frozenset({AlertKind.GRID_IRREGULARITY}),
                    frozenset({DETECTOR}),
                )
            return None
        self.inside_run = 0
        self.outside_run += 1
        if self.outside_run < self.readings_to_alert:
            return None
        self.firing = True
        return self._finding(station_id, reading, volts, bool(lost))

    def _finding(
        self, station_id: str, reading: Reading, volts: tuple[float, ...], lost: bool
    ) -> Finding:
        lowest, highest = min(volts), max(volts)
        if lost:
            summary = f"A phase of the supply is lost ({lowest:.1f} V) while another has voltage."
        else:
            extreme = (
                f"lowest {lowest:.1f} V"
                if NOMINAL_VOLTAGE_V - lowest >= highest - NOMINAL_VOLTAGE_V
                else f"highest {highest:.1f} V"
            )
            summary = (
                f"The supply voltage was outside 230 V +-10 % on {self.outside_run} readings "
                f"in a row ({extreme})."
            )
        deviation = max(abs(v - NOMINAL_VOLTAGE_V) for v in volts) / NOMINAL_VOLTAGE_V
        severity = Severity.HIGH if lost or deviation > 1.5 * BAND else Severity.MEDIUM
        evidence = Evidence(
            at=reading.time,
            summary=summary,
            features={f"voltage_l{i}_v": v for i, v in enumerate(volts, start=1)},
            scores={"max_deviation_ratio": deviation, "readings_outside": self.outside_run},
        )
        return Finding(
            station_id, 0, AlertKind.GRID_IRREGULARITY, severity, reading.time, DETECTOR, evidence
        )
