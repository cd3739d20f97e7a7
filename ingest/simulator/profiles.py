"""Healthy variation: station models, the weather, the grid and how much a station is
used. Pure (no I/O, no clock): every value is a function of the telemetry time and a
seeded generator, so a run repeats exactly under its seed.

A static threshold trips on healthy stations here, as in the field: a compact 7.4 kW
wallbox runs 1.6 degrees per kW hotter than a 22 kW pillar, an afternoon in July adds
15 degrees of ambient to it, the evening peak pulls the grid down by 2-3 %, and one EV
in five stops drawing long before it leaves (SuspendedEV). A connector's own baseline
(``models.features``) stays put through all of it; a fault bends it
(``ingest.simulator.behaviours.faults``).

>>> from datetime import UTC, datetime
>>> weather = Weather(seed=1)
>>> summer = datetime(2026, 7, 15, 15, tzinfo=UTC)
>>> winter_night = datetime(2026, 1, 15, 4, tzinfo=UTC)
>>> weather.ambient_c(summer) > weather.ambient_c(winter_night) + 15
True
>>> model = STATION_MODELS["SIM-AC7"]
>>> e = measure(model, power_w=7000.0, offered_w=7400.0, ambient_c=20.0,
...     grid_v=(230.0,), rng=random.Random(1))
>>> e.phases, round(e.currents_a[0], 1), 29 < e.temperature_c < 33, e.voltages_v[0] < 230
(1, 31.1, True, True)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

NOMINAL_V = 230.0


@dataclass(frozen=True, slots=True)
class StationModel:
    """A model of charge point: its rating and its healthy baselines."""

    name: str
    max_power_w: float
    phases: int
    rise_c_per_kw: float  # connector temperature above ambient per kW carried
    drop_v_at_max: float  # voltage lost in the station at full load, each phase
    power_noise: float  # relative noise of the power reading
    voltage_noise_v: float
    temperature_noise_c: float
    temperature_location: str  # OCPP 1.6 Location of the Temperature measurand
    temperature_unit: str  # "Celsius", or the 1.6 spelling "Celcius"


STATION_MODELS: dict[str, StationModel] = {
    m.name: m
    for m in (
        # The fleet's classic station (the default): a 22 kW pillar.
        StationModel("SIM-AC22", 22_000.0, 3, 0.6, 3.0, 0.004, 0.3, 0.3, "Body", "Celsius"),
        # An 11 kW wallbox with a thinner cable: hotter per kW.
        StationModel("SIM-AC11", 11_000.0, 3, 1.1, 2.0, 0.008, 0.4, 0.4, "Cable", "Celcius"),
        # A single-phase 7.4 kW wallbox in a closed housing: hottest per kW.
        StationModel("SIM-AC7", 7_400.0, 1, 1.6, 2.5, 0.01, 0.5, 0.5, "Outlet", "Celsius"),
        # A 22 kW pillar of another vendor on a long feeder: more voltage drop, noisy meter.
        StationModel("SIM-AC22B", 22_000.0, 3, 0.8, 5.0, 0.015, 0.6, 0.4, "Outlet", "Celcius"),
    )
}
DEFAULT_MODEL = "SIM-AC22"


def choose_model(names: tuple[str, ...], cp_id: str, index: int, seed: int) -> StationModel:
    """The model of a station: ``names`` cycled over the stations, or ``("mixed",)`` for a
    seeded draw from every model."""
    if names == ("mixed",):
        rng = random.Random(f"{seed}/{cp_id}/model")
        return STATION_MODELS[rng.choice(sorted(STATION_MODELS))]
    return STATION_MODELS[names[index % len(names)]]


@dataclass(frozen=True, slots=True)
class Usage:
    """How a station is used: heavy (short gaps between sessions) or light, and how
    often an EV stops drawing early (SuspendedEV until it leaves)."""

    arrival_gap_factor: float = 1.0
    early_stop_share: float = 0.0


def draw_usage(cp_id: str, seed: int) -> Usage:
    """Heavy, normal or light use for a station, seeded."""
    rng = random.Random(f"{seed}/{cp_id}/usage")
    factor = rng.choice((0.3, 1.0, 1.0, 3.0))
    return Usage(arrival_gap_factor=factor, early_stop_share=rng.uniform(0.1, 0.3))


def _day_noise(seed: int, key: str, day: int, scale: float) -> float:
    return random.Random(f"{seed}/{key}/{day}").gauss(0.0, scale)


@dataclass(frozen=True, slots=True)
class Weather:
    """Ambient temperature at a site: a season cycle (coldest mid-January), a day cycle
    (coldest at 05:00, hottest at 15:00, wider in summer) and a seeded offset per day
    (some afternoons are hot)."""

    seed: int = 0
    mean_c: float = 11.0
    season_amplitude_c: float = 9.0
    day_amplitude_c: float = 5.0

    def ambient_c(self, at: datetime) -> float:
        day = at.timetuple().tm_yday
        season = -math.cos(2 * math.pi * (day - 15) / 365.0)  # -1 mid-January, +1 mid-July
        hours = at.hour + at.minute / 60.0 + at.second / 3600.0
        daily = -math.cos(2 * math.pi * (hours - 3.0) / 24.0)  # -1 at 03:00, +1 at 15:00
        width = self.day_amplitude_c * (1.0 + 0.5 * season)
        offset = _day_noise(self.seed, "weather", at.toordinal(), 2.5)
        return self.mean_c + self.season_amplitude_c * season + width * daily + offset


@dataclass(frozen=True, slots=True)
class Grid:
    """The supply voltage at a site: 230 V with a day cycle (high at night, the evening
    peak pulls it down), a seeded offset per day and a small unbalance per phase."""

    seed: int = 0
    nominal_v: float = NOMINAL_V
    day_amplitude: float = 0.012  # relative
    phase_offsets: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def voltages_v(self, at: datetime, phases: int) -> tuple[float, ...]:
        hours = at.hour + at.minute / 60.0
        daily = math.cos(2 * math.pi * (hours - 3.0) / 24.0)  # +1 at 03:00, -1 at 15:00
        evening = -0.6 * math.exp(-(((hours - 19.0) / 2.0) ** 2))  # the evening peak
        offset = _day_noise(self.seed, "grid", at.toordinal(), 0.004)
        level = self.nominal_v * (1.0 + self.day_amplitude * (daily + evening) + offset)
        return tuple(level * (1.0 + self.phase_offsets[p]) for p in range(phases))


def site_grid(cp_id: str, seed: int) -> Grid:
    rng = random.Random(f"{seed}/{cp_id}/grid")
    unbalance = (0.0, rng.uniform(-0.004, 0.004), rng.uniform(-0.004, 0.004))
    return Grid(seed=seed, phase_offsets=unbalance)


@dataclass(frozen=True, slots=True)
class Electrical:
    """What a connector measures at one instant."""

    power_w: float
    offered_w: float
    voltages_v: tuple[float, ...]  # per phase, at the outlet
    currents_a: tuple[float, ...]  # per phase
    temperature_c: float

    @property
    def phases(self) -> int:
        return len(self.voltages_v)


def measure(
    model: StationModel,
    *,
    power_w: float,
    offered_w: float,
    ambient_c: float,
    grid_v: tuple[float, ...],
    rng: random.Random,
    thermal_factor: float = 1.0,
    pole_drops_v: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> Electrical:
    """The readings of a connector carrying ``power_w`` from a grid at ``grid_v`` per
    phase: the station drops a little voltage in proportion to the load (a worn pole
    ``pole_drops_v`` more, at full load), the current splits over the live phases, and
    the connector sits ``rise_c_per_kw`` (x ``thermal_factor``) above ambient per kW."""
    load = max(0.0, power_w) / model.max_power_w
    voltages = tuple(
        max(0.0, v - (model.drop_v_at_max + pole_drops_v[p]) * load * (v / NOMINAL_V))
        + (rng.gauss(0.0, model.voltage_noise_v) if v > 0 else 0.0)
        for p, v in enumerate(grid_v)
    )
    measured = power_w * (1.0 + rng.gauss(0.0, model.power_noise)) if power_w > 0 else 0.0
    live = [v for v in voltages if v > 50.0]
    per_phase = measured / sum(live) if live and measured > 0 else 0.0
    currents = tuple(per_phase if v > 50.0 else 0.0 for v in voltages)
    rise = model.rise_c_per_kw * thermal_factor * max(0.0, power_w) / 1000.0
    temperature = ambient_c + rise + rng.gauss(0.0, model.temperature_noise_c)
    return Electrical(max(0.0, measured), offered_w, voltages, currents, temperature)


@dataclass(frozen=True, slots=True)
class StationProfile:
    """Everything healthy about one station: its model, site weather and grid, use."""

    model: StationModel
    weather: Weather
    grid: Grid
    usage: Usage

    def ambient_c(self, at: datetime) -> float:
        return self.weather.ambient_c(at)


def station_profile(
    cp_id: str, index: int, *, models: tuple[str, ...], seed: int, varied_use: bool
) -> StationProfile:
    """The station's profile under the fleet's seed (``varied_use``: heavy and light
    stations and EVs that stop early; else every station like the fleet's defaults)."""
    return StationProfile(
        model=choose_model(models, cp_id, index, seed),
        weather=Weather(seed=seed),
        grid=site_grid(cp_id, seed),
        usage=draw_usage(cp_id, seed) if varied_use else Usage(),
    )
