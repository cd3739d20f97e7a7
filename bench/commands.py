"""Command round trip benchmark: ``python -m bench.commands [--rate 100 --duration 30]``.

The real pieces, each as deployed: the embedded broker, a fresh migrated database, the
gateway (``python -m chargeflow.cli gateway``) and the API (``python -m api``) as their
own processes, and ``--stations`` simulated stations (half OCPP 1.6, half 2.0.1) in a
process of their own too (sharing one event loop with the client, the stations' answers
waited behind thousands of the client's requests and its round trips measured the
bench's own queue). Commands are offered open-loop at ``--rate`` per second for ``--duration``
seconds, round robin over the stations: ``POST /v1/stations/{id}/commands/trigger-message``
(a Heartbeat, which every station of both versions answers) then
``GET /v1/commands/{id}?wait=10``, from an aiohttp client (httpx's asyncio client cost
more CPU than the API it drove here). Measured per command:

* ``round_trip``: POST sent -> the final outcome read by the caller (the client's view);
* ``stages``, from the command row's timestamps (the database's clock): the API's insert
  to the broker's ack (``published_at``), on to the gateway sending it (``sent_at``), on
  to the station's answer recorded (``completed_at``), and ``in_store`` end to end;
* achieved rate, outcomes by status, and the CPU% of the API, gateway, stations and client
  processes over the window (100 % = one core; on a small machine they all share it).

Prints one JSON document (progress on stderr). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg

from bench.common import ROOT, bench_stack, machine_info
from bench.gateway import gateway_process
from bench.loadgen import raise_fd_limit
from chargeflow.stack import free_port, tcp_open, wait_until
from ingest.simulator.clock import SimClock
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import provision
from ingest.simulator.report import FleetReport
from ingest.simulator.station import SimulatedStation
from store.api_keys import create_api_key

FINAL = {"accepted", "rejected", "failed", "timed_out", "expired", "offline"}
STATION_PASSWORD = "bench-commands-station-1"


def progress(text: str) -> None:
    print(f"[bench.commands] {text}", file=sys.stderr, flush=True)


@contextmanager
def api_process(
    database_url: str, bootstrap: str, prefix: str, work: Path
) -> Iterator[tuple[int, psutil.Process]]:
    """``python -m api`` on a free port until it accepts connections: (port, process)."""
    port = free_port()
    env = {
        **os.environ,
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CHARGEFLOW_TOPIC_PREFIX": prefix,
        "CHARGEFLOW_API_PORT": str(port),
        "CHARGEFLOW_LOG_LEVEL": "warning",
    }
    with open(work / "api.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}; see {work}/api.log")
            return tcp_open("127.0.0.1", port)

        wait_until(up, 60, "the API")
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)


def fleet_config(gateway_url: str, database_url: str, stations: int) -> FleetConfig:
    """Stations that stay connected and idle (no sessions of their own)."""
    return FleetConfig(
        gateway_url=gateway_url,
        stations=stations,
        station_id_prefix="BCMD",
        sessions_per_station=None,
        mean_arrival_gap_s=1e12,
        mean_dwell_s=1e12,
        meter_interval_s=3600,
        heartbeat_interval_s=3600,
        time_scale=1,
        call_timeout_s=10,
        database_url=database_url,
        station_password=STATION_PASSWORD,
        ocpp_versions=("1.6", "2.0.1"),
        seed=5,
    )


async def connected_fleet(
    config: FleetConfig, tg: asyncio.TaskGroup
) -> tuple[list[SimulatedStation], list[asyncio.Task[None]]]:
    """Every station connected and booted; their tasks (they run until cancelled)."""
    await asyncio.to_thread(provision, config)
    clock, versions = SimClock(config.time_scale), config.station_versions()
    stations = [
        SimulatedStation(cp, config, FleetReport(), clock, ocpp_version=versions[cp])
        for cp in config.station_ids()
    ]
    tasks = [tg.create_task(station.run(), name=station.cp_id) for station in stations]
    async with asyncio.timeout(120):
        for station in stations:
            await station._booted_once.wait()
    return stations, tasks


async def _serve_stations(config: FleetConfig, ready: Connection, stop: EventType) -> None:
    async with asyncio.TaskGroup() as tg:
        stations, tasks = await connected_fleet(config, tg)
        ready.send([s.cp_id for s in stations])
        await asyncio.to_thread(stop.wait)
        for task in tasks:  # the stations run until told to stop
            task.cancel()


def _stations_main(config: FleetConfig, ready: Connection, stop: EventType) -> None:
    asyncio.run(_serve_stations(config, ready, stop))


@contextmanager
def stations_process(config: FleetConfig) -> Iterator[tuple[list[str], int]]:
    """The fleet connected and booted in a process of its own: (station ids, its pid)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    proc = context.Process(target=_stations_main, args=(config, sender, stop), daemon=True)
    proc.start()
    try:
        if not receiver.poll(180):
            raise RuntimeError(f"the stations were not all booted within 180 s ({proc.exitcode=})")
        station_ids: list[str] = receiver.recv()
        assert proc.pid is not None
        yield station_ids, proc.pid
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


async def one_command(client: aiohttp.ClientSession, cp_id: str) -> dict[str, Any]:
    # A transport failure is an outcome to count, not a reason to stop the run.
    try:
        return await _one_command(client, cp_id)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"status": f"client_{type(exc).__name__}", "round_trip_s": None}


async def _one_command(client: aiohttp.ClientSession, cp_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    async with client.post(
        f"/v1/stations/{cp_id}/commands/trigger-message", json={"message": "Heartbeat"}
    ) as resp:
        if resp.status != 202:
            return {"status": f"http_{resp.status}", "round_trip_s": None}
        location, command_id = resp.headers["location"], (await resp.json())["command_id"]
    accepted = time.perf_counter()
    async with client.get(location, params={"wait": "10"}) as final:
        body = await final.json() if final.status == 200 else {}
        status = body.get("status") if final.status == 200 else f"http_{final.status}"
    done = time.perf_counter()
    return {
        "command_id": command_id,
        "status": status,
        "round_trip_s": done - started if status in FINAL else None,
        "post_s": accepted - started,
        "wait_s": done - accepted,
    }


async def offer(
    client: aiohttp.ClientSession, stations: list[str], rate: float, duration: float
) -> tuple[list[dict[str, Any]], float]:
    """Open loop: command n leaves at ``start + n / rate`` whatever the earlier ones do."""
    results: list[dict[str, Any]] = []
    count = int(rate * duration)
    start = time.perf_counter()

    async def run(n: int) -> None:
        results.append(await one_command(client, stations[n % len(stations)]))

    async with asyncio.TaskGroup() as tg:
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, not synchronisation
            tg.create_task(run(n))
    return results, time.perf_counter() - start


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


STAGES = {
    "api_to_broker": "published_at - requested_at",  # the API's insert to Kafka's ack
    "broker_to_station": "sent_at - published_at",  # the gateway read it and sent it
    "station_answer": "completed_at - sent_at",  # the CALL out to its answer recorded
    "in_store": "completed_at - requested_at",
}


def stage_seconds(database_url: str, command_ids: list[str]) -> dict[str, list[float]]:
    """Per stage of the command rows (database clock), seconds."""
    columns = ", ".join(f"extract(epoch FROM {span})" for span in STAGES.values())
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT {columns} FROM commands WHERE command_id = ANY(%s::uuid[])"
            " AND completed_at IS NOT NULL AND published_at IS NOT NULL",
            (command_ids,),
        ).fetchall()
    return {name: [float(r[i]) for r in rows] for i, name in enumerate(STAGES)}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def measure(
    args: argparse.Namespace, api_port: int, station_ids: list[str], url: str, pids: dict[str, int]
) -> dict[str, Any]:
    key = create_api_key(url, "bench-commands", "operator")
    progress(f"{len(station_ids)} stations connected; offering {args.rate}/s")
    # Enough connections that the client never queues its own requests (each waits
    # for its outcome on its connection).
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{api_port}",
        headers={"X-API-Key": key},
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=2000),
    ) as client:
        await offer(client, station_ids, 10, 1)  # warm-up
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        results, wall = await offer(client, station_ids, args.rate, args.duration)
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    done = [r for r in results if r["round_trip_s"] is not None]
    ids = [r["command_id"] for r in results if "command_id" in r]
    return {
        "offered_per_s": args.rate,
        "commands": len(results),
        "achieved_per_s": round(len(done) / wall, 1),
        "outcomes": dict(Counter(r["status"] for r in results)),
        "round_trip": percentiles([r["round_trip_s"] for r in done]),
        # the client's two requests: the POST's answer (202), then the GET ?wait=10's
        "post": percentiles([r["post_s"] for r in done]),
        "wait": percentiles([r["wait_s"] for r in done]),
        "stages": {
            name: percentiles(values)
            for name, values in (await asyncio.to_thread(stage_seconds, url, ids)).items()
        },
        "cpu_percent": {name: round((cpu1[name] - cpu0[name]) / wall * 100, 1) for name in pids},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands")
    parser.add_argument("--rate", type=float, default=100.0, help="commands offered per s")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--stations", type=int, default=50)
    args = parser.parse_args(argv)
    raise_fd_limit()
    report: dict[str, Any] = {"machine": machine_info(), "stations": args.stations}
    with bench_stack("cmd", partitions=4) as stack:
        prefix = stack.topics.ocpp_events.split("ocpp.events")[0]
        with (
            gateway_process(
                stack.broker.bootstrap, stack.database_url, stack.topics, stack.work
            ) as gw,
            api_process(stack.database_url, stack.broker.bootstrap, prefix, stack.work) as (
                api_port,
                api,
            ),
            stations_process(fleet_config(gw.url, stack.database_url, args.stations)) as (
                station_ids,
                stations_pid,
            ),
        ):
            pids = {
                "api": api.pid,
                "gateway": gw.proc.pid,
                "stations": stations_pid,
                "client": os.getpid(),
            }
            report["load"] = asyncio.run(
                measure(args, api_port, station_ids, stack.database_url, pids)
            )
    report["target"] = {"rate_per_s": 100}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
