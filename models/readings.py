"""One connector's measurements at one instant, gathered from normalised meter samples.

A station reports one ``meterValue`` as several sampled values (energy, power, current
and voltage per phase, temperature...); the gateway normalises each into a
:class:`bus.normalized.MeterSample`. Fault features need them side by side, so they are
grouped back by (station, EVSE, timestamp) into a :class:`Reading`. Values are floats:
these are physics for detectors, not billing figures (billing reads the registers as
Decimal in the sessions flow). Pure: no I/O, no clock.

>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
>>> def sample(measurand, value, unit, phase=None, location="Outlet"):
...     return MeterSample(charge_point_id="CP1", evse_id=1, connector_id=1, timestamp=t,
...         measurand=measurand, phase=phase, unit=unit, context="Sample.Periodic",
...         location=location, value=Decimal(value))
>>> [(key, r)] = readings_from_samples([
...     sample("Energy.Active.Import.Register", "12.5", "kWh"),
...     sample("Power.Active.Import", "7.2", "kW"),
...     sample("Current.Import", "16", "A", "L1"), sample("Current.Import", "15", "A", "L2"),
...     sample("Voltage", "231", "V", "L1-N"), sample("Voltage", "229", "V", "L2-N"),
...     sample("Temperature", "41", "Celcius", location="Cable")])
>>> key, r.energy_wh, r.power_w, r.current_a, r.voltages_v, r.temperature_c
(('CP1', 1), 12500.0, 7200.0, 16.0, (231.0, 229.0), 41.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bus.measurands import (
    CURRENT,
    ENERGY_REGISTER,
    EV,
    PHASES,
    POWER,
    POWER_OFFERED,
    TEMPERATURE,
    VOLTAGE,
    phase_of,
    to_w,
    to_wh,
)
from bus.normalized import MeterSample

ConnectorKey = tuple[str, int]  # (charge_point_id, evse_id); 0 = the whole station


@dataclass(frozen=True, slots=True)
class Reading:
    """What one connector measured at one instant (telemetry time)."""

    time: datetime
    energy_wh: float | None = None  # the import register
    power_w: float | None = None  # active import power (summed over phases if only per phase)
    offered_w: float | None = None  # what the station offers the EV (Power.Offered)
    current_a: float | None = None  # the most loaded phase (heat follows the hottest conductor)
    voltages_v: tuple[float, ...] = ()  # phase-to-neutral, L1..L3 as reported
    temperature_c: float | None = None  # connector/cable/body, never the EV's


def temperature_in_celsius(value: float, unit: str) -> float | None:
    """A temperature in degrees Celsius; 1.6 also spells it ``Celcius``; None for an
    unknown unit.

    >>> [temperature_in_celsius(41, "Celcius"), temperature_in_celsius(50, "Fahrenheit")]
    [41.0, 10.0]
    >>> round(temperature_in_celsius(300, "K"), 2), temperature_in_celsius(1, "Rankine")
    (26.85, None)
    """
    kind = unit.strip().lower()
    if kind in ("", "celsius", "celcius"):
        return float(value)
    if kind == "fahrenheit":
        return (float(value) - 32.0) * 5.0 / 9.0
    if kind == "k":
        return float(value) - 273.15
    return None


class _Gathered:
    __slots__ = ("currents", "energy", "offered", "power", "power_phases", "temps", "voltages")

    def __init__(self) -> None:
        self.energy: float | None = None
        self.power: float | None = None
        self.power_phases: dict[str, float] = {}
        self.offered: float | None = None
        self.currents: dict[str, float] = {}
        self.voltages: dict[str, float] = {}
        self.temps: list[float] = []

    def add(self, sample: MeterSample) -> None:
        measurand, value = sample.measurand, sample.value
        line = phase_of(sample.phase)
        if measurand == ENERGY_REGISTER and sample.phase is None:
            self.energy = _float(to_wh(value, sample.unit, sample.unit_multiplier))
        elif measurand == POWER:
            watts = _float(to_w(value, sample.unit, sample.unit_multiplier))
            if watts is not None and line is not None:
                self.power_phases[line] = watts
            elif watts is not None and sample.phase is None:
                self.power = watts
        elif measurand == POWER_OFFERED:
            self.offered = _float(to_w(value, sample.unit, sample.unit_multiplier))
        elif measurand == CURRENT:
            self.currents[line or ""] = float(value)
        elif measurand == VOLTAGE and line is not None:
            self.voltages[line] = float(value)
        elif measurand == VOLTAGE and sample.phase is None:
            self.voltages.setdefault("", float(value))
        elif measurand == TEMPERATURE and sample.location != EV:
            celsius = temperature_in_celsius(float(value), sample.unit)
            if celsius is not None:
                self.temps.append(celsius)

    def reading(self, time: datetime) -> Reading:
        power = self.power
        if power is None and self.power_phases:
            power = sum(self.power_phases.values())
        phased = [self.voltages[p] for p in PHASES if p in self.voltages]
        return Reading(
            time=time,
            energy_wh=self.energy,
            power_w=power,
            offered_w=self.offered,
            current_a=max(self.currents.values()) if self.currents else None,
            voltages_v=tuple(phased) if phased else tuple(self.voltages.values()),
            temperature_c=max(self.temps) if self.temps else None,
        )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def readings_from_samples(samples: Iterable[MeterSample]) -> list[tuple[ConnectorKey, Reading]]:
    """Group samples by (station, EVSE, timestamp) into readings, in the order each
    group first appears. Samples without an EVSE count for the whole station (0)."""
    groups: dict[tuple[str, int, datetime], _Gathered] = {}
    for sample in samples:
        key = (sample.charge_point_id, sample.evse_id or 0, sample.timestamp)
        gathered = groups.get(key)
        if gathered is None:
            gathered = groups[key] = _Gathered()
        gathered.add(sample)
    return [((cp, evse), g.reading(time)) for (cp, evse, time), g in groups.items()]
