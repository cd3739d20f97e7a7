"""A seeded set of sessions priced under a set of tariffs, and a digest of each result:
the regression check that the cost calculation still gives, bit for bit, what it gave
when ``tests/data/cost_golden.json`` was written (see tests/unit/test_cost_golden.py).

The sessions are the bench's (bench/billing.py: ramps, tapers, pauses, parking, starts
over a year), priced under the bench's three tariffs, and a part of them varied to reach
what those tariffs do not: current readings, reservations before the session (and some
that expired), starts moved onto DST change days, and tariffs with kWh, duration,
current, date, wrapping time windows, reservation elements, a min price, another VAT
and a currency without minor units.

Regenerate (only when a change of results is intended, and say so in the commit):
``.venv/bin/python -m tests.support.cost_golden``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.billing import TARIFFS, ZONE, _component, _tariff, sessions
from billing.cost import price_session
from billing.preview import encode_cdr
from billing.priced import PricedSession
from billing.session_usage import Reservation, SessionUsage, check_usage
from billing.tariffs import Tariff

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "cost_golden.json"
SEED = 2026
BENCH_SESSIONS = 200
VARIED_SESSIONS = 80
# Local midnight, 01:30 and the jump on the DST change days of Europe/Amsterdam, 2026.
DST_STARTS = (
    datetime(2026, 3, 28, 22, 40, tzinfo=ZONE),
    datetime(2026, 3, 29, 1, 10, tzinfo=ZONE),
    datetime(2026, 10, 24, 23, 5, tzinfo=ZONE),
    datetime(2026, 10, 25, 2, 20, tzinfo=ZONE, fold=0),
)


def _broad(tariff_id: str, currency: str = "EUR", **extra: Any) -> Tariff:
    def element(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
        return {"price_components": list(components), "restrictions": restrictions}

    return _tariff(
        tariff_id,
        [
            element(
                _component("FLAT", "1.00"),
                _component("TIME", "2.40", 300),
                reservation="RESERVATION",
            ),
            element(_component("FLAT", "3.00", vat=9), reservation="RESERVATION_EXPIRES"),
            element(_component("ENERGY", "0.61", 500, vat=9), min_current="32", max_duration=7200),
            element(
                _component("TIME", "1.20", 60),
                start_time="22:00",
                end_time="06:00",
                day_of_week=["FRIDAY", "SATURDAY"],
                min_kwh="5",
            ),
            element(_component("ENERGY", "0.41"), start_date="2026-06-01", end_date="2026-09-01"),
            element(
                _component("ENERGY", "0.33", vat=None),
                _component("TIME", "0.05", 0),
                _component("PARKING_TIME", "0.90", 900),
                min_duration=1800,
                max_power="30",
                max_kwh="40",
            ),
            {
                "price_components": [
                    _component("ENERGY", "0.36"),
                    _component("PARKING_TIME", "1.50"),
                    _component("FLAT", "0.25"),
                ]
            },
        ],
        currency=currency,
        **extra,
    )


VARIED_TARIFFS = {
    "broad_min_price": _broad("BROAD", min_price={"excl_vat": "2.00"}),
    "broad_jpy_max_price": _broad("BROADJPY", "JPY", max_price={"excl_vat": "25"}),
}


def _varied(usage: SessionUsage, n: int) -> SessionUsage:
    """``usage`` with current readings; every third with a reservation before it; every
    fourth moved onto a DST change day; every tenth only an expired reservation."""
    readings = tuple(
        dataclasses.replace(r, current_a=(r.power_w / 230).quantize(Decimal("0.1")))
        for r in usage.readings
    )
    if n % 4 == 1:
        shift = DST_STARTS[(n // 4) % len(DST_STARTS)] - usage.start
        readings = tuple(dataclasses.replace(r, time=r.time + shift) for r in readings)
    start, stop = readings[0].time, readings[-1].time
    reservation = None
    if n % 3 == 0:
        reservation = Reservation(start - timedelta(minutes=7 + n), start)
    if n % 10 == 7:
        gone = Reservation(start, start + timedelta(minutes=15 + n), expired=True)
        return check_usage(SessionUsage(ZONE, gone.end, gone.end, (), gone))
    return check_usage(SessionUsage(ZONE, start, stop, readings, reservation))


def cases() -> Iterator[tuple[str, Tariff, SessionUsage]]:
    bench = list(sessions(BENCH_SESSIONS, SEED))
    for name, tariff in TARIFFS.items():
        for usage in bench:
            yield name, tariff, usage
    varied = [_varied(usage, n) for n, usage in enumerate(bench[:VARIED_SESSIONS])]
    for name, tariff in VARIED_TARIFFS.items():
        for usage in varied:
            yield name, tariff, usage


def _canonical(value: Any) -> Any:
    """Decimals by value (``Decimal("1.50")`` is ``Decimal("1.5")``), through tuples."""
    if isinstance(value, Decimal):
        return str(value.normalize())
    if isinstance(value, tuple | list):
        return tuple(_canonical(v) for v in value)
    return value


def _details(priced: PricedSession) -> str:
    """What the CDR rounds away: the exact volumes and totals the calculation holds (by
    value: how many trailing zeros a Decimal carries is not a result)."""
    parts: list[Any] = [dataclasses.astuple(priced.exact_total), priced.total_energy_kwh]
    parts += [priced.total_time_h, priced.total_parking_time_h]
    parts += [(p.energy_kwh, p.seconds, p.end, sorted(p.elements.items())) for p in priced.periods]
    parts += [
        (line.volume, line.billed_volume, dataclasses.astuple(line.cost)) for line in priced.lines
    ]
    return repr(_canonical(parts))


def digest(tariff: Tariff, usage: SessionUsage) -> list[str]:
    """[sha256 of the encoded CDR, sha256 of the exact details, the total incl. VAT] (the
    last to read a difference by)."""
    priced = price_session(tariff, usage)
    cdr = hashlib.sha256(encode_cdr(priced.to_cdr())).hexdigest()
    details = hashlib.sha256(_details(priced).encode()).hexdigest()
    return [cdr[:32], details[:32], str(priced.total_cost.incl_vat)]


def compute() -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for name, tariff, usage in cases():
        out.setdefault(name, []).append(digest(tariff, usage))
    return out


if __name__ == "__main__":
    rows = [
        f"{json.dumps(name)}: [\n" + ",\n".join(json.dumps(entry) for entry in entries) + "\n]"
        for name, entries in compute().items()
    ]
    GOLDEN.write_text("{\n" + ",\n".join(rows) + "\n}\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
