"""A fleet of simulated OCPP 1.6J and 2.0.1 charge points in one asyncio process.

``FleetConfig.ocpp_versions`` cycles over the stations (``station.SimulatedStation``
each); the ground truth of every session is recorded in the ``FleetReport``.
Simulated time runs ``time_scale`` times faster than real time; message timestamps
are simulated time (ahead of the wall clock when ``time_scale > 1``).

Layout, imports one way from here down: ``station`` (connection, the port) ->
``sessions`` (charging) and ``versions`` -> ``handlers`` (answers to the CSMS, one
``@on`` handler per command) -> ``port`` / ``state`` / ``behaviours`` (how a station
departs from a healthy one: add one there) -> ``dialect``, ``physics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ingest.simulator.clock import SimClock
from ingest.simulator.config import FleetConfig
from ingest.simulator.report import FleetReport
from ingest.simulator.station import BeforeSend, SimulatedStation
from store.id_tokens import add_id_tag
from store.stations import provision_station


def provision(config: FleetConfig) -> None:
    """Register the fleet's stations and id tags (idempotent)."""
    assert config.database_url is not None
    for cp_id in config.station_ids():
        provision_station(config.database_url, cp_id, password=config.station_password)
    for tag in config.id_tags:
        add_id_tag(config.database_url, tag)


async def run_fleet(
    config: FleetConfig,
    report: FleetReport | None = None,
    *,
    before_send: BeforeSend | None = None,
    on_station: Callable[[SimulatedStation], None] | None = None,
) -> FleetReport:
    """Run every station until each finished ``sessions_per_station`` sessions
    (forever when None; cancel to stop). Returns the ground truth; pass ``report``
    to watch it fill while the fleet runs, ``before_send`` to inject faults.

    ``on_station`` is called with every station once it exists and before any of
    them runs (so before any register moves), e.g. to attach smart meters that
    follow the connectors' registers (``ingest.simulator.meters.station_sources``)."""
    if config.database_url:
        await asyncio.to_thread(provision, config)
    if report is None:
        report = FleetReport()
    report.stations = config.station_ids()
    clock = SimClock(config.time_scale, config.start)
    versions = config.station_versions()
    tags_in_use: set[str] = set()
    stations = [
        SimulatedStation(
            cp_id, config, report, clock, before_send, versions[cp_id], tags_in_use, index
        )
        for index, cp_id in enumerate(report.stations)
    ]
    if on_station is not None:
        for station in stations:
            on_station(station)
    async with asyncio.TaskGroup() as tg:
        for station in stations:
            tg.create_task(station.run(), name=station.cp_id)
    return report
