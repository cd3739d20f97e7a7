"""End-to-end latency: ``python -m bench.e2e [--stations 1000 --rate 1000 --duration 30]``.

Simulated fleet (:mod:`bench.loadgen`, separate process) -> gateway
(``python -m chargeflow.cli gateway``, separate process) -> Kafka (embedded broker)
-> sessions flow (``python -m flows.run flows.sessions.dataflow:from_env()``, tail
mode) -> PostgreSQL. Latency of one MeterValues CALL = the moment its energy sample
is queryable in ``meter_samples`` minus its send time. The generator stamps each
MeterValues with the wall-clock send time (UTC, ms), which becomes the row's
``measured_at``, so a row's age is known the moment it is seen; the database is
polled every ``--poll-ms`` for the rows of ``--probes`` stations (an index range
scan on the series key), so the resolution is about the poll interval (the
number is an upper bound by at most that much). Same machine, same clock.

Prints one JSON document to stdout. Nothing asserts timing; ``targets`` says
whether p95 <= 2 s was met on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import bench_stack, flow_env, machine_info, start_flow, stop_flow
from bench.gateway import (
    BENCH_PASSWORD,
    gateway_process,
    progress,
    provision_fleet,
    start_loadgen,
    topic_message_count,
)
from bench.loadgen import percentiles, raise_fd_limit
from flows.recovery import ensure_recovery_dir

TARGET_P95_S = 2.0
ENERGY = "Energy.Active.Import.Register"
LOOKBACK = timedelta(seconds=10)


class SamplePoller:
    """Polls meter_samples for the probe stations' energy rows; records each row's age
    (first seen - measured_at) once."""

    def __init__(self, url: str, probes: list[str], interval_s: float) -> None:
        self.url = url
        self.probes = probes
        self.interval_s = interval_s
        self.seen: set[tuple[str, datetime]] = set()
        self.ages_ms: list[tuple[datetime, float]] = []  # (measured_at, age)
        self.polls = 0
        self.poll_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-poller", daemon=True)

    def start(self) -> SamplePoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        since = datetime.now(UTC)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                started = time.perf_counter()
                rows = conn.execute(
                    "SELECT charge_point_id, measured_at FROM meter_samples "
                    "WHERE series_key = ANY(SELECT meter_series_key(cp, 1, %s, '', 'Outlet',"
                    " 'Sample.Periodic') FROM unnest(%s::text[]) AS cp) "
                    "AND charge_point_id = ANY(%s) AND connector_id = 1 AND measurand = %s "
                    "AND phase = '' AND location = 'Outlet' AND context = 'Sample.Periodic' "
                    "AND measured_at > %s",
                    (ENERGY, self.probes, self.probes, ENERGY, since),
                ).fetchall()
                now = datetime.now(UTC)
                self.polls += 1
                self.poll_ms.append((time.perf_counter() - started) * 1000)
                newest = None
                for cp, measured_at in rows:
                    key = (cp, measured_at)
                    if key in self.seen:
                        continue
                    self.seen.add(key)
                    self.ages_ms.append((measured_at, (now - measured_at).total_seconds() * 1000))
                    newest = measured_at if newest is None else max(newest, measured_at)
                if newest is not None:  # rows land out of order across stations: look back
                    since = max(since, newest - LOOKBACK)
                self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="MeterValues/s, whole fleet")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--probes",
        type=int,
        default=100,
        help="stations whose rows are timed (each sends rate/stations per s)",
    )
    parser.add_argument("--poll-ms", type=float, default=50.0)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--security-profile", type=int, choices=(0, 1), default=1)
    parser.add_argument("--connect-concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1000, help="flow Kafka batch size")
    parser.add_argument("--logs", type=Path, default=None)
    args = parser.parse_args(argv)

    fd_limit = raise_fd_limit()
    prefix = "E2E-"
    probes = [
        f"{prefix}{i:05d}" for i in range(0, args.stations, max(1, args.stations // args.probes))
    ]
    result: dict[str, Any] = {
        "machine": machine_info(fd_limit=fd_limit),
        "config": {
            "stations": args.stations,
            "target_messages_per_s": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "probe_stations": len(probes),
            "poll_ms": args.poll_ms,
            "partitions": args.partitions,
            "security_profile": args.security_profile,
            "flow_batch_size": args.batch_size,
        },
    }
    with bench_stack("e2e", args.partitions, args.logs) as stack:
        work, broker, url, topics = stack.work, stack.broker, stack.database_url, stack.topics
        result["database"] = stack.database_origin
        progress(f"provisioning {args.stations} stations")
        provision_fleet(url, prefix, args.stations, BENCH_PASSWORD, args.security_profile)
        recovery = work / f"recovery-{uuid.uuid4().hex[:6]}"
        ensure_recovery_dir(recovery, 1)
        flow = start_flow(
            flow_env(
                broker.bootstrap,
                topics,
                url,
                tail=True,
                CHARGEFLOW_FLOW_BATCH_SIZE=str(args.batch_size),
            ),
            "-r",
            str(recovery),
            "-s",
            "5",
            "-b",
            "0",
            log=work / "flow.log",
        )
        try:
            with gateway_process(broker.bootstrap, url, topics, work) as gw:
                progress(f"connecting {args.stations} stations")
                run = start_loadgen(
                    gw,
                    stations=args.stations,
                    rate=args.rate,
                    duration=args.duration,
                    warmup=args.warmup,
                    prefix=prefix,
                    password=BENCH_PASSWORD,
                    extra=["--connect-concurrency", str(args.connect_concurrency)],
                )
                ready = run.wait_ready(timeout=1800)
                progress(
                    f"{ready['connected']} ready in {ready['connect_s']} s; "
                    f"{args.rate:g} msg/s for {args.warmup:g}+{args.duration:g} s"
                )
                if flow.poll() is not None:
                    raise RuntimeError(f"sessions flow exited with {flow.returncode}")
                flow_ps = psutil.Process(flow.pid)
                flow_cpu0 = flow_ps.cpu_times()
                poller = SamplePoller(url, probes, args.poll_ms / 1000).start()
                t0 = time.monotonic()
                run.go()
                load = run.result(timeout=args.warmup + args.duration + 600)
                # let the last rows land (bounded), then stop polling
                sent_until = datetime.now(UTC)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if any(m >= sent_until - timedelta(seconds=1) for m, _ in poller.ages_ms[-50:]):
                        break
                    time.sleep(0.2)
                time.sleep(1.0)
                poller.stop()
                wall = time.monotonic() - t0
                flow_cpu1 = flow_ps.cpu_times()
                window = run.window()
                events = topic_message_count(broker.bootstrap, topics.ocpp_events)
        finally:
            flow_rc = stop_flow(flow)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM meter_samples").fetchone()
            samples_rows = int(row[0]) if row else 0

    # Only samples sent inside the measured window count (the warm-up is excluded by
    # time: the first warmup seconds after GO).
    ages = sorted(poller.ages_ms)
    if ages:
        first = ages[0][0]
        measured = [age for at, age in ages if (at - first).total_seconds() >= args.warmup]
    else:
        measured = []
    lat = percentiles(measured)
    result["load"] = load
    result["gateway"] = window
    result["flow"] = {
        "exit_code": flow_rc,
        "cpu_percent": round(
            100
            * ((flow_cpu1.user + flow_cpu1.system) - (flow_cpu0.user + flow_cpu0.system))
            / wall,
            1,
        ),
    }
    result["kafka_ocpp_events"] = events
    result["meter_samples_rows"] = samples_rows
    result["e2e"] = {
        "samples_timed": len(measured),
        "samples_seen_incl_warmup": len(ages),
        "latency_ms": lat,
        "polls": poller.polls,
        "poll_query_ms": percentiles(poller.poll_ms),
    }
    p95 = lat.get("p95")
    result["targets"] = {
        "p95_s": TARGET_P95_S,
        "p95_met": p95 is not None and p95 <= TARGET_P95_S * 1000,
    }
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
