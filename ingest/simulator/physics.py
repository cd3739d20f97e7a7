"""Pure parts of the simulation: EVs, the charging power curve, the energy register."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rating:
    """A station's electrical rating: what its connectors can deliver."""

    max_power_w: float
    voltage_v: float
    phases: int


@dataclass(frozen=True, slots=True)
class Ev:
    battery_wh: float
    soc_start: float  # 0..1
    soc_target: float  # 0..1, the driver's wish (or 1.0)
    max_power_w: float  # what the car's charger accepts
    dwell_s: float  # how long it stays plugged in (simulated seconds)
    # Simulated seconds after which the car stops drawing (SuspendedEV) until it
    # leaves; None: it draws until full or gone.
    suspend_after_s: float | None = None


def draw_ev(rng: random.Random, *, mean_dwell_s: float, early_stop_share: float = 0.0) -> Ev:
    """A car that arrives; ``early_stop_share`` of them stop drawing early."""
    soc_start = rng.uniform(0.05, 0.6)
    dwell_s = max(60.0, rng.expovariate(1.0 / mean_dwell_s))
    suspend = None
    if early_stop_share > 0 and rng.random() < early_stop_share:
        suspend = dwell_s * rng.uniform(0.2, 0.7)
    return Ev(
        battery_wh=rng.choice((40_000.0, 58_000.0, 64_000.0, 77_000.0, 100_000.0)),
        soc_start=soc_start,
        soc_target=min(1.0, max(soc_start + 0.1, rng.uniform(0.8, 1.0))),
        max_power_w=rng.choice((7_400.0, 11_000.0, 22_000.0)),
        dwell_s=dwell_s,
        suspend_after_s=suspend,
    )


def charging_power_w(
    soc: float, ev_max_w: float, station_max_w: float, taper_start: float = 0.8
) -> float:
    """Constant power up to ``taper_start`` SoC, then a linear taper to 5 % at full."""
    limit = max(0.0, min(ev_max_w, station_max_w))
    if soc >= 1.0:
        return 0.0
    if soc <= taper_start:
        return limit
    frac = (soc - taper_start) / (1.0 - taper_start)
    return limit * (1.0 - 0.95 * frac)


class EnergyRegister:
    """The meter's Energy.Active.Import.Register: whole Wh, only ever increases."""

    def __init__(self, start_wh: int) -> None:
        if start_wh < 0:
            raise ValueError("register cannot be negative")
        self._exact = float(start_wh)

    @property
    def wh(self) -> int:
        return math.floor(self._exact)

    def add(self, energy_wh: float) -> int:
        if energy_wh < 0 or math.isnan(energy_wh):
            raise ValueError(f"energy must be >= 0, got {energy_wh}")
        self._exact += energy_wh
        return self.wh


@dataclass(slots=True)
class ChargingState:
    """One EV on one connector, advanced in simulated time steps."""

    ev: Ev
    soc: float
    station_max_w: float
    elapsed_s: float = 0.0
    power_w: float = 0.0
    derate: float = 1.0  # share of the demand that gets through (a damaged cable: less)

    @property
    def demand_w(self) -> float:
        """What the car asks for now (0 while suspended)."""
        if self.suspended:
            return 0.0
        return charging_power_w(self.soc, self.ev.max_power_w, self.station_max_w)

    @property
    def offered_w(self) -> float:
        """What the station offers the car: its limit, capped at what the car's charger
        takes (negotiated at plug-in)."""
        return max(0.0, min(self.ev.max_power_w, self.station_max_w))

    @property
    def suspended(self) -> bool:
        after = self.ev.suspend_after_s
        return after is not None and self.elapsed_s >= after

    def step(self, dt_s: float) -> float:
        """Charge for ``dt_s`` seconds; returns the energy delivered in Wh."""
        if dt_s <= 0:
            return 0.0
        power = self.demand_w * max(0.0, self.derate)
        energy = power * dt_s / 3600.0
        room = max(0.0, (self.ev.soc_target - self.soc) * self.ev.battery_wh)
        energy = min(energy, room)
        self.soc = min(self.ev.soc_target, self.soc + energy / self.ev.battery_wh)
        self.elapsed_s += dt_s
        self.power_w = energy * 3600.0 / dt_s
        return energy

    @property
    def done(self) -> str | None:
        """Why the session ends now, or None to keep charging."""
        if self.soc >= self.ev.soc_target - 1e-9:
            return "Local"  # the driver ends it (app/RFID) once the car reached its target
        if self.elapsed_s >= self.ev.dwell_s:
            return "EVDisconnected"
        return None


def electrical(
    power_w: float, *, voltage_v: float, phases: int, rng: random.Random
) -> tuple[float, float, float]:
    """(voltage V, current A per phase, temperature Celsius) for a power: the smart
    meters' simple physics (the stations' are in ``profiles.measure``)."""
    voltage = voltage_v * (1.0 + rng.gauss(0.0, 0.005))
    current = power_w / (voltage * phases) if power_w > 0 else 0.0
    temperature = 22.0 + 0.012 * current * current + rng.gauss(0.0, 0.2)
    return voltage, current, temperature
