"""Billing benchmarks (JSON on stdout; asserts nothing).

``cost``: the cost of ``--sessions`` sessions of ~60 readings each (100,000 by default)
under three tariffs (energy only; time of use with a parking fee and a start fee; kWh
tiers with a fast-charging surcharge, a night window and a price cap), in this process:
sessions/s on one core. The sessions are seeded and realistic: 20 min to 8 h plugged
in, power ramping up, wandering and tapering, pauses, parking at the end for two in
five, starts spread over a year (DST change days included) in Europe/Amsterdam.
Generating them is not timed; pricing (periods, restrictions, step_size, VAT, rounding
and the breakdown) is, in wall-clock time and in this process's CPU time
(``sessions_per_cpu_s``: the per-core figure that holds on a shared machine). Target:
>= 5,000 sessions/s per core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import machine_info
from billing.cost import price_session
from billing.session_usage import Reading, SessionUsage, check_usage
from billing.tariffs import Tariff, parse_tariff

ZONE = ZoneInfo("Europe/Amsterdam")
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 5000


def _component(kind: str, price: str, step: int = 1, vat: int | None = 21) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "price": price, "step_size": step}
    if vat is not None:
        out["vat"] = vat
    return out


def _tariff(tariff_id: str, elements: list[dict[str, Any]], **extra: Any) -> Tariff:
    return parse_tariff(
        {
            "country_code": "NL",
            "party_id": "CFL",
            "id": tariff_id,
            "currency": "EUR",
            "elements": elements,
            "last_updated": "2026-01-01T00:00:00Z",
            **extra,
        }
    )


TARIFFS = {
    "energy_only": _tariff("ENERGY", [{"price_components": [_component("ENERGY", "0.35")]}]),
    "time_of_use": _tariff(
        "TOU",
        [
            {"price_components": [_component("FLAT", "0.50")]},
            {
                "price_components": [_component("ENERGY", "0.45"), _component("TIME", "0.60", 60)],
                "restrictions": {"start_time": "17:00", "end_time": "21:00"},
            },
            {
                "price_components": [_component("ENERGY", "0.18")],
                "restrictions": {"start_time": "23:00", "end_time": "07:00"},
            },
            {
                "price_components": [
                    _component("ENERGY", "0.30"),
                    _component("PARKING_TIME", "6.00", 300),
                ]
            },
        ],
    ),
    "tiers_and_power": _tariff(
        "TIERS",
        [
            {
                "price_components": [_component("ENERGY", "0.59", 100)],
                "restrictions": {"min_power": "50"},
            },
            {
                "price_components": [_component("ENERGY", "0.29", 100)],
                "restrictions": {"max_kwh": "20"},
            },
            {
                "price_components": [_component("ENERGY", "0.39", 100)],
                "restrictions": {"day_of_week": ["SATURDAY", "SUNDAY"]},
            },
            {
                "price_components": [
                    _component("ENERGY", "0.34", 100),
                    _component("PARKING_TIME", "3.00", 60),
                ]
            },
        ],
        max_price={"excl_vat": "60.00", "incl_vat": "72.60"},
    ),
}


def sessions(count: int, seed: int, readings: int = 60) -> Iterator[SessionUsage]:
    rng = random.Random(seed)
    for _ in range(count):
        start = YEAR_START + timedelta(seconds=rng.randrange(0, 364 * 86400))
        plugged_s = rng.randint(20 * 60, 8 * 3600)
        step = timedelta(seconds=plugged_s / readings)
        charging_share = 0.7 if rng.random() < 0.4 else 1.0  # two in five park at the end
        peak_w = rng.choice([7_400, 11_000, 22_000, 50_000, 150_000])
        at, energy, out = start, rng.randint(0, 5_000_000), []
        for k in range(readings):
            progress = k / readings
            if progress >= charging_share or rng.random() < 0.03:  # parked, or a pause
                power = 0
            else:
                ramp = min(1.0, (k + 1) / 3)
                taper = 1.0 if progress < 0.6 else max(0.2, 1.6 - progress * 1.4)
                power = int(peak_w * ramp * taper * rng.uniform(0.95, 1.0))
            out.append(Reading(at, energy, Decimal(power)))
            at += step
            energy += int(power * step.total_seconds() / 3600)
        out.append(Reading(at, energy, Decimal(0)))
        yield check_usage(SessionUsage(ZONE, start, at, tuple(out)))


def bench_cost(count: int, seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, tariff in TARIFFS.items():
        priced = periods = 0
        elapsed = cpu = 0.0
        total = Decimal(0)
        remaining = count
        chunk_seed = seed
        while remaining > 0:
            batch = list(sessions(min(CHUNK, remaining), chunk_seed))
            chunk_seed += 1
            began, began_cpu = time.perf_counter(), time.process_time()
            for usage in batch:
                result = price_session(tariff, usage)
                periods += len(result.periods)
                total += result.total_cost.incl_vat
            elapsed += time.perf_counter() - began
            cpu += time.process_time() - began_cpu
            priced += len(batch)
            remaining -= len(batch)
        results[name] = {
            "sessions": priced,
            "seconds": round(elapsed, 3),
            "sessions_per_s": round(priced / elapsed),
            "cpu_seconds": round(cpu, 3),
            "cpu_us_per_session": round(cpu / priced * 1e6, 1),
            "sessions_per_cpu_s": round(priced / cpu),
            "periods_per_session": round(periods / priced, 2),
            "revenue_incl_vat": str(total),
        }
    priced_all = sum(r["sessions"] for r in results.values())
    wall = sum(r["seconds"] for r in results.values())
    cpu_all = sum(r["cpu_seconds"] for r in results.values())
    return {
        "by_tariff": results,
        "sessions_per_s_per_core": round(priced_all / wall),
        # CPU time: what one core does, whatever else runs on a shared machine.
        "sessions_per_cpu_s": round(priced_all / cpu_all),
        "target": 5000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.billing")
    parser.add_argument("--sessions", type=int, default=100_000, help="per tariff")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = {
        "machine": machine_info(),
        "readings_per_session": 60,
        "cost": bench_cost(args.sessions, args.seed),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
