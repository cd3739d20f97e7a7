"""A fleet and its smart meters run together, as ``chargeflow simulate`` does: the
settings and options make a :class:`Simulation`, :func:`simulate` runs it until the
fleet is done or until told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from bus.times import utc_now
from ingest.meters.config import MqttEndpoint
from ingest.simulator.behaviours.faults import plan_faults
from ingest.simulator.config import PROFILE_BEHAVIOURS, FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.ground_truth import Manifest, write_ground_truth
from ingest.simulator.meters import (
    MeterSimConfig,
    SimulatedMeters,
    station_sources,
    topic_template_for,
)
from ingest.simulator.report import FleetReport
from ingest.simulator.settings import SimulatorSettings
from ingest.simulator.station import SimulatedStation
from runtime.settings import secret
from runtime.tasks import shutdown_watch

log = structlog.get_logger("chargeflow.simulate")

# Stations, meters and their connections close within a few seconds of being told to;
# longer than this and the tasks still running are logged.
SHUTDOWN_GRACE_S = 10.0


@dataclass(frozen=True)
class Options:
    """What the command line may set over the settings (None: the setting's value)."""

    stations: int
    gateway_url: str
    sessions: int | None
    ocpp_versions: tuple[str, ...]
    id_tags: tuple[str, ...]
    meter_interval_s: float | None = None
    time_scale: float | None = None
    mean_dwell_s: float | None = None
    mqtt_url: str | None = None
    smart_meter_interval_s: float | None = None
    faults: str | None = None  # a fault spec (ingest.simulator.behaviours.faults)
    start: datetime | None = None  # the station clocks' start (None: now)
    seed: int | None = None
    profile_behaviour: str = ""  # "SIM-0003=ignore,SIM-0007=reject" (the rest obey)
    profile_reaction_s: float | None = None  # simulated s an EV takes to follow a limit


@dataclass(frozen=True)
class Simulation:
    fleet: FleetConfig
    meters: MeterSimConfig | None  # None: no smart meters
    fault_spec: str = ""

    def manifest(self, end: datetime | None = None) -> Manifest:
        fleet = self.fleet
        assert fleet.start is not None
        return Manifest(
            stations=tuple(fleet.station_ids()),
            start=fleet.start,
            end=end,
            seed=fleet.seed,
            faults=len(fleet.faults),
            spec=self.fault_spec,
        )

    def write_ground_truth(self, path: Path, end: datetime | None = None) -> None:
        """The run's manifest and injected faults (``ingest.simulator.ground_truth``)."""
        write_ground_truth(path, self.manifest(end), self.fleet.faults)


def profile_behaviours(text: str, stations: list[str]) -> dict[str, str]:
    """``STATION=BEHAVIOUR`` pairs, comma-separated (``--profile-behaviour``).

    >>> profile_behaviours("SIM-0002=ignore, SIM-0003=reject", ["SIM-0002", "SIM-0003"])
    {'SIM-0002': 'ignore', 'SIM-0003': 'reject'}
    >>> profile_behaviours("SIM-0009=obey", ["SIM-0001"])
    Traceback (most recent call last):
    ...
    ValueError: --profile-behaviour: no station SIM-0009 in this fleet (SIM-0001...SIM-0001)
    """
    found: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        station, sep, behaviour = (x.strip() for x in part.partition("="))
        if not sep or behaviour not in PROFILE_BEHAVIOURS:
            raise ValueError(
                f"--profile-behaviour: {part!r} is not STATION=one of {list(PROFILE_BEHAVIOURS)}"
            )
        if station not in stations:
            raise ValueError(
                f"--profile-behaviour: no station {station} in this fleet"
                f" ({stations[0]}...{stations[-1]})"
            )
        found[station] = behaviour
    return found


def plan(sim: SimulatorSettings, options: Options) -> Simulation:
    """The fleet and meters to run; ValueError for a bad MQTT URL, fault spec or profile
    behaviour."""
    mqtt_url = options.mqtt_url or secret(sim.mqtt_url)
    interval_s = options.smart_meter_interval_s or sim.simulated_meter_interval_s
    scale = options.time_scale or sim.simulator_time_scale
    meters: MeterSimConfig | None = None
    if mqtt_url:
        meters = MeterSimConfig(
            mqtt=MqttEndpoint.from_url(mqtt_url),
            interval_s=interval_s,
            topic_template=topic_template_for(sim.mqtt_topic_pattern),
        )
    seed = sim.simulator_seed if options.seed is None else options.seed
    start = (options.start or utc_now()).replace(microsecond=0)
    stations = [f"SIM-{i:04d}" for i in range(1, options.stations + 1)]
    spec = options.faults if options.faults is not None else sim.simulator_faults
    faults = plan_faults(spec, stations, start, seed)  # ValueError for a bad spec
    models = tuple(m.strip() for m in sim.simulator_station_models.split(",") if m.strip())
    fleet = FleetConfig(
        gateway_url=options.gateway_url,
        stations=options.stations,
        sessions_per_station=options.sessions,
        meter_interval_s=options.meter_interval_s or sim.simulator_meter_interval_s,
        time_scale=scale,
        mean_dwell_s=options.mean_dwell_s or sim.simulator_mean_dwell_s,
        mean_arrival_gap_s=sim.simulator_mean_arrival_gap_s,
        # A smart meter reading falls between two sessions on a connector (the sessions
        # flow brackets each session with the meter's readings before and after it).
        min_arrival_gap_s=2 * interval_s * scale if meters else 0.0,
        id_tags=options.id_tags,
        station_password=secret(sim.simulator_station_password),
        ocpp_versions=options.ocpp_versions,
        seed=seed,
        start=start,
        faults=tuple(faults),
        station_models=models,
        varied_use=sim.simulator_varied_use,
        idle_meter_interval_s=sim.simulator_idle_meter_interval_s,
        signed_meter_values=sim.simulator_signed_meter_values,
        profile_behaviour=profile_behaviours(options.profile_behaviour, stations),
    )
    if options.profile_reaction_s is not None:
        fleet = replace(fleet, profile_reaction_s=options.profile_reaction_s)
    if fleet.station_ids() != stations:
        raise ValueError("the fleet's station ids are not SIM-0001...")
    if meters is not None and interval_s * scale > 600:
        log.warning(
            "smart meter readings are more than 10 simulated minutes apart; the "
            "sessions flow may not find one within 15 minutes of a start or stop",
            interval_s=interval_s,
            time_scale=scale,
        )
    return Simulation(fleet, meters, spec)


def simulated_end(simulation: Simulation, real_start: float, real_end: float) -> datetime:
    """The station time when a run that began at loop time ``real_start`` stopped."""
    assert simulation.fleet.start is not None
    elapsed = (real_end - real_start) * simulation.fleet.time_scale
    return simulation.fleet.start + timedelta(seconds=elapsed)


async def _fleet_then_flush(simulation: Simulation, meters: SimulatedMeters | None) -> FleetReport:
    def attach(station: SimulatedStation) -> None:
        assert meters is not None
        meters.add_sources(station_sources(station))

    result = await run_fleet(simulation.fleet, on_station=attach if meters else None)
    if meters is not None and simulation.meters is not None:
        # The readings after the last sessions, then stop.
        try:
            async with asyncio.timeout(max(30.0, 3 * simulation.meters.interval_s)):
                await meters.flush()
        except TimeoutError:
            log.warning("smart meters did not publish after the last sessions")
    return result


async def simulate(
    simulation: Simulation, until: Callable[[], Coroutine[Any, Any, None]]
) -> FleetReport | None:
    """The ground truth once the fleet is done; None when ``until()`` returned first."""
    config = simulation.meters
    meters = SimulatedMeters(config) if config is not None else None
    async with (
        shutdown_watch("simulator", SHUTDOWN_GRACE_S) as watch,
        asyncio.TaskGroup() as tg,
    ):
        running = tg.create_task(_fleet_then_flush(simulation, meters), name="fleet")
        if meters is not None and config is not None:
            tg.create_task(meters.run(), name="smart-meters")
            log.info(
                "simulated smart meters publishing",
                meters=simulation.fleet.stations,
                mqtt=config.mqtt.url,
                interval_s=config.interval_s,
            )
        waiter = tg.create_task(until(), name="until")
        await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            log.info("simulation stopping")
        watch.arm()
        running.cancel()
        waiter.cancel()
        if meters is not None:
            meters.stop()
    if meters is not None:
        log.info("simulated smart meters stopped", published=meters.published)
    return None if running.cancelled() else running.result()
