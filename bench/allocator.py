"""Site allocator benchmark (JSON on stdout; asserts nothing).

``site``: one site with ``--sessions`` active sessions (1,000 by default: 70 % three-phase,
30 % single-phase spread over L1-L3, three membership tiers, half with a departure and an
energy need, a third reporting SoC, 2 % offline or non-compliant), allocated ``--runs``
times; p50/p99/max of one allocation in wall time (``time.perf_counter``) and CPU time
(``time.process_time``). Two limits: ``ample`` (every minimum fits, water-filling does the
work) and ``scarce`` (a third of the sessions paused, rotation). Target: p99 <= 5 ms.

``fleet``: ``--sites`` sites of ``--stations`` stations each (10,000 stations by default),
every site recomputed once; the total, repeated ``--fleet-runs`` times.

Inputs are seeded and built before timing; only ``allocate`` is timed. The collector is
tuned as the flows tune it (``runtime.gc.tune_gc(FLOW_GC_YOUNG_THRESHOLD)``), the setting
the smart-charging flow will run with; ``--default-gc`` leaves Python's defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import machine_info
from flows.config import FLOW_GC_YOUNG_THRESHOLD
from runtime.gc import tune_gc
from smart_charging.allocator import allocate
from smart_charging.inputs import Phase, SessionDemand, Site, SiteLimit

NOW = datetime(2026, 7, 1, 18, tzinfo=UTC)


def demand(rng: random.Random, n: int) -> SessionDemand:
    three_phase = rng.random() < 0.7
    declared = rng.random() < 0.5
    flag = rng.random()
    return SessionDemand(
        station_id=f"CP{n:05d}",
        connector_id=1 + n % 2,
        started_at=NOW - timedelta(minutes=rng.randint(0, 600)),
        phases=3 if three_phase else 1,
        phase=rng.choice(list(Phase)),
        rotation=rng.choice(["RST", "STR", "TRS"]),
        max_a=rng.choice([10.0, 16.0, 16.0, 32.0]),
        measured_a=rng.uniform(0, 32),
        online=flag >= 0.01,
        compliant=flag < 0.01 or flag >= 0.02,
        tier=rng.choice([0, 0, 0, 1, 2]),
        departure=NOW + timedelta(minutes=rng.randint(30, 720)) if declared else None,
        energy_needed_wh=rng.uniform(2_000, 60_000) if declared else None,
        soc_percent=rng.uniform(5, 95) if rng.random() < 0.33 else None,
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def bench_site(sessions: int, runs: int, per_phase_a: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    demands = [demand(rng, n) for n in range(sessions)]
    site = Site("S1", SiteLimit((per_phase_a,) * 3))
    base = (120.0, 80.0, 100.0)
    wall, cpu = [], []
    allocation = allocate(site, base, demands, NOW)  # warm-up
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        allocation = allocate(site, base, demands, NOW)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    limits = allocation.limits().values()
    return {
        "sessions": sessions,
        "limit_a_per_phase": per_phase_a,
        "paused": sum(1 for a in limits if a == 0),
        "headroom_a": allocation.headroom_a,
        "wall": percentiles(wall),
        "cpu": percentiles(cpu),
    }


def bench_fleet(sites: int, stations: int, runs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    fleet = []
    for s in range(sites):
        demands = [demand(rng, s * stations + n) for n in range(stations)]
        fleet.append((Site(f"S{s}", SiteLimit.from_kw(rng.choice([50, 100, 150]))), demands))
    totals = []
    for _ in range(runs):
        w0 = time.perf_counter()
        for site, demands in fleet:
            allocate(site, (10.0, 10.0, 10.0), demands, NOW)
        totals.append(time.perf_counter() - w0)
    return {
        "sites": sites,
        "stations": sites * stations,
        "total_ms": [round(t * 1000, 1) for t in totals],
        "per_site_us": round(min(totals) / sites * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allocator")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--fleet-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--default-gc", action="store_true")
    args = parser.parse_args(argv)
    if not args.default_gc:
        tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    report = {
        "machine": machine_info(),
        "gc": "python defaults" if args.default_gc else f"tune_gc({FLOW_GC_YOUNG_THRESHOLD})",
        "target_p99_ms": 5.0,
        "site": {
            "ample": bench_site(args.sessions, args.runs, 9000.0, args.seed),
            "scarce": bench_site(args.sessions, args.runs, 3500.0, args.seed),
        },
        "fleet": bench_fleet(args.sites, args.stations, args.fleet_runs, args.seed),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
