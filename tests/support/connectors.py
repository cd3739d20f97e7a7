"""Synthetic connectors for the fault models and the fault evaluation: one connector
sampled every minute, healthy (sessions, ambient and grid day cycles, sensor noise) or
with a fault that bends one physical relation, as readings or as the envelopes a 1.6
station sends (transactions and MeterValues)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bus.envelope import Envelope
from bus.measurands import (
    CURRENT,
    ENERGY_REGISTER,
    POWER,
    POWER_OFFERED,
    TEMPERATURE,
    VOLTAGE,
)
from models.readings import Reading
from tests.support.builders import iso
from tests.support.load_events import call16, start16, stop16

T0 = datetime(2026, 7, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Physics:
    """What a connector does in one minute; a fault bends it."""

    power_w: float  # delivered
    offered_w: float
    rise_c: float  # temperature above ambient
    pole_drops_v: tuple[float, float, float]  # voltage lost in the station per phase
    register_factor: float = 1.0  # how much of the energy the register counts


Fault = Callable[[Physics, float], Physics]  # (healthy minute, progress 0..1) -> faulty


def stream(
    days: float,
    seed: int,
    fault: Fault | None = None,
    fault_days: float = 1.0,
    start: datetime = T0,
) -> list[Reading]:
    """A connector sampled every minute from ``start``: sessions of 1-4 h at 3.7-22 kW,
    idle between; ambient 12-30 degrees and grid 228-234 V over the day; temperature
    rises ~0.8 degrees per kW. ``fault`` bends the last ``fault_days``, growing from 0
    to 1."""
    rng = random.Random(seed)
    readings: list[Reading] = []
    energy = 10_000.0
    end = int(days * 24 * 60)
    fault_start = end - int(fault_days * 24 * 60)
    minute = 0
    while minute < end:
        idle, session = rng.randint(20, 240), rng.randint(60, 240)
        offered = rng.choice([3700.0, 7400.0, 11000.0, 22000.0])
        for m in range(minute, min(minute + idle + session, end)):
            charging = m >= minute + idle
            power = offered * rng.uniform(0.97, 1.0) if charging else 0.0
            drop = 3.0 * power / 22000.0
            physics = Physics(power, offered, 0.8 * power / 1000.0, (drop, drop, drop))
            if fault is not None and m >= fault_start:
                physics = fault(physics, (m - fault_start + 1) / (end - fault_start))
            energy += physics.power_w / 60.0 * physics.register_factor
            ambient = 21.0 + 9.0 * math.sin(2 * math.pi * (m / 1440.0 - 0.3))
            grid = 231.0 + 3.0 * math.sin(2 * math.pi * (m / 1440.0 - 0.1))
            readings.append(
                Reading(
                    time=start + m * MINUTE,
                    energy_wh=round(energy),
                    power_w=physics.power_w,
                    offered_w=physics.offered_w if charging else None,
                    current_a=physics.power_w / 690.0,
                    voltages_v=tuple(grid - d + rng.gauss(0, 0.3) for d in physics.pole_drops_v),
                    temperature_c=ambient + physics.rise_c + rng.gauss(0, 0.3),
                )
            )
        minute += idle + session
    return readings


def fault_start(readings: list[Reading], fault_days: float = 1.0) -> datetime:
    """The first minute a fault of ``fault_days`` at the end of ``readings`` bends."""
    return readings[-1].time - timedelta(days=fault_days) + MINUTE


def overheating(p: Physics, progress: float) -> Physics:
    return replace(p, rise_c=p.rise_c + 30.0 * progress * p.power_w / 22000.0)


def contactor_wear(p: Physics, progress: float) -> Physics:
    first, *rest = p.pole_drops_v
    extra = 20.0 * progress * p.power_w / 22000.0
    return replace(p, pole_drops_v=(first + extra, rest[0], rest[1]))


def weak_supply(p: Physics, progress: float) -> Physics:
    """The site's feeder sags while the site charges, evenly on every phase (not one
    pole), down to 40 V at the end."""
    extra = 40.0 * progress if p.power_w > 0 else 0.0
    return replace(p, pole_drops_v=tuple(d + extra for d in p.pole_drops_v))  # type: ignore[arg-type]


def cable_damage(p: Physics, progress: float) -> Physics:
    """Less power gets through, and the connector warms with what does flow."""
    factor = 1.0 - 0.6 * progress
    return replace(p, power_w=p.power_w * factor, rise_c=p.rise_c * factor)


def frozen_register(p: Physics, progress: float) -> Physics:
    return replace(p, register_factor=0.0)


def meter_values(cp: str, connector: int, reading: Reading, tx: int | None = None) -> Envelope:
    """``reading`` as the 1.6 MeterValues a station sends (normalised as the gateway
    does it): register, power, offered power, current, voltage per phase, temperature;
    with ``tx`` as its transactionId."""
    values: list[tuple[str, Any, str, str | None]] = [
        (ENERGY_REGISTER, reading.energy_wh, "Wh", None),
        (POWER, reading.power_w, "W", None),
        (POWER_OFFERED, reading.offered_w, "W", None),
        (CURRENT, reading.current_a, "A", "L1"),
        *((VOLTAGE, v, "V", f"L{i}-N") for i, v in enumerate(reading.voltages_v, start=1)),
        (TEMPERATURE, reading.temperature_c, "Celsius", None),
    ]
    sampled: list[dict[str, str]] = []
    for measurand, value, unit, phase in values:
        if value is None:
            continue
        sv = {"value": f"{value:.3f}", "measurand": measurand, "unit": unit}
        if phase is not None:
            sv["phase"] = phase
        sampled.append(sv)
    payload: dict[str, Any] = {
        "connectorId": connector,
        "meterValue": [{"timestamp": iso(reading.time), "sampledValue": sampled}],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return call16(cp, "MeterValues", payload, reading.time)


def station_envelopes(
    cp: str, connector: int, readings: list[Reading], first_tx: int = 1
) -> list[Envelope]:
    """``readings`` as a 1.6 station reports them: a StartTransaction a second before a
    session's first reading (offered power appears), its MeterValues with the
    transactionId, a StopTransaction a second before the first idle reading after it."""
    envelopes: list[Envelope] = []
    tx: int | None = None
    next_tx = first_tx
    for reading in readings:
        register = round(reading.energy_wh or 0)
        before = reading.time - timedelta(seconds=1)
        charging = reading.offered_w is not None
        if charging and tx is None:
            tx, next_tx = next_tx, next_tx + 1
            envelopes.append(start16(cp, connector, tx, register, before))
        elif not charging and tx is not None:
            envelopes.append(stop16(cp, tx, register, before))
            tx = None
        envelopes.append(meter_values(cp, connector, reading, tx))
    if tx is not None:
        last = readings[-1]
        envelopes.append(stop16(cp, tx, round(last.energy_wh or 0), last.time + MINUTE))
    return envelopes


def ambient_step_station(
    days: int,
    step_day: int,
    step_c: float,
    power_w: float = 3700.0,
    seed: int = 0,
    thermal: Callable[[datetime], float] | None = None,
) -> list[tuple[int, Reading]]:
    """Two connectors of one station, in time order: connector 1 charges every night from
    21:00 to 04:00 at ``power_w`` and every morning from 08:00 to 11:00 at 11 kW (a
    reading every 5 minutes under load, every 15 idle), connector 2 is always free (a
    reading every 15 minutes: the ambient). The ambient follows a day cycle with a small
    offset per day, and from the midnight that starts day ``step_day`` it is ``step_c``
    warmer (one offset per day, as the simulator's weather has it): connector 1 is busy
    across that midnight. It rises 1.1 degrees per kW, times ``thermal(time)`` (an
    overheating contact)."""
    rng = random.Random(seed)
    offsets = [rng.gauss(0.0, 0.5) + (step_c if day >= step_day else 0.0) for day in range(days)]
    readings: list[tuple[int, Reading]] = []
    for minute in range(0, days * 24 * 60, 5):
        at = T0 + minute * MINUTE
        hours = (minute % 1440) / 60.0
        ambient = 16.0 + 5.0 * -math.cos(2 * math.pi * (hours - 3.0) / 24.0)
        ambient += offsets[minute // 1440]
        if hours >= 21.0 or hours < 4.0:
            power = power_w
        elif 8.0 <= hours < 11.0:
            power = 11000.0
        else:
            power = 0.0
        idle_reading = minute % 15 == 0
        if idle_reading:
            temp = ambient + rng.gauss(0.0, 0.3)
            readings.append((2, Reading(time=at, power_w=0.0, temperature_c=temp)))
        if power > 0 or idle_reading:
            factor = 1.0 if thermal is None else thermal(at)
            rise = 1.1 * factor * power / 1000.0
            measured = power * rng.uniform(0.98, 1.0)
            temp = ambient + rise + rng.gauss(0.0, 0.3)
            offered = power if power > 0 else None
            reading = Reading(time=at, power_w=measured, offered_w=offered, temperature_c=temp)
            readings.append((1, reading))
    return readings
