"""``python -m ingest.simulator --url ws://127.0.0.1:9000/ocpp --stations 10``: run a fleet
until interrupted (or until ``--sessions`` sessions per station are done)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet


def parse_args(argv: list[str] | None = None) -> FleetConfig:
    p = argparse.ArgumentParser(prog="python -m ingest.simulator", description=__doc__)
    p.add_argument("--url", default=FleetConfig.gateway_url, help="gateway base URL")
    p.add_argument("--stations", type=int, default=FleetConfig.stations)
    p.add_argument("--prefix", default=FleetConfig.station_id_prefix)
    p.add_argument("--connectors", type=int, default=FleetConfig.connectors_per_station)
    p.add_argument("--sessions", type=int, default=None, help="per station (default: forever)")
    p.add_argument("--meter-interval", type=float, default=FleetConfig.meter_interval_s)
    p.add_argument("--time-scale", type=float, default=FleetConfig.time_scale)
    p.add_argument("--seed", type=int, default=FleetConfig.seed)
    p.add_argument(
        "--ocpp-versions",
        default=",".join(FleetConfig.ocpp_versions),
        help="comma-separated, cycled over the stations, e.g. 1.6,2.0.1",
    )
    p.add_argument(
        "--database-url", default=None, help="provision stations and id tags in this database first"
    )
    p.add_argument(
        "--password-env",
        default="CHARGEFLOW_SIMULATOR_STATION_PASSWORD",
        help="environment variable holding the stations' Basic-auth password "
        "(a password is never passed on the command line)",
    )
    p.add_argument("--ca-file", default=None, help="CA bundle to trust for wss:// URLs")
    a = p.parse_args(argv)
    return FleetConfig(
        gateway_url=a.url,
        stations=a.stations,
        station_id_prefix=a.prefix,
        connectors_per_station=a.connectors,
        sessions_per_station=a.sessions,
        meter_interval_s=a.meter_interval,
        time_scale=a.time_scale,
        seed=a.seed,
        database_url=a.database_url,
        station_password=os.environ.get(a.password_env) or None,
        tls_ca_file=a.ca_file,
        ocpp_versions=tuple(v.strip() for v in a.ocpp_versions.split(",") if v.strip()),
    )


async def main(argv: list[str] | None = None) -> int:
    report = await run_fleet(parse_args(argv))
    print(report.to_json())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
