"""Builders for tariffs and metered sessions in the billing tests: OCPI JSON as a tariff
author writes it, and sessions as runs of constant power (charging) or parking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.session_usage import SessionUsage, parse_usage
from billing.tariffs import Tariff, parse_tariff


def component(
    kind: str, price: str | Decimal, *, vat: str | int | None = 21, step: int = 1
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "price": str(price), "step_size": step}
    if vat is not None:
        out["vat"] = str(vat)
    return out


def element(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"price_components": list(components)}
    if restrictions:
        out["restrictions"] = restrictions
    return out


def tariff_json(*elements: dict[str, Any], currency: str = "EUR", **fields: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CFL",
        "id": fields.pop("id", "TARIFF-1"),
        "currency": currency,
        "elements": list(elements),
        "last_updated": "2026-01-01T00:00:00Z",
        **fields,
    }


def tariff(*elements: dict[str, Any], **fields: Any) -> Tariff:
    return parse_tariff(tariff_json(*elements, **fields))


@dataclass(frozen=True)
class Run:
    """``minutes`` at ``power_w`` (0: parking, the register stands still); ``energy_wh``
    overrides the energy power x time would give."""

    minutes: float
    power_w: int
    energy_wh: int | None = None
    current_a: float | None = None


def session_json(
    start: datetime, *runs: Run, time_zone: str = "Europe/Amsterdam", register_wh: int = 1000
) -> dict[str, Any]:
    readings: list[dict[str, Any]] = []
    at, energy = start, register_wh
    for run in runs:
        reading: dict[str, Any] = {"time": _iso(at), "energy_wh": energy, "power_w": run.power_w}
        if run.current_a is not None:
            reading["current_a"] = run.current_a
        readings.append(reading)
        at += timedelta(minutes=run.minutes)
        if run.energy_wh is not None:
            energy += run.energy_wh
        else:
            energy += round(run.power_w * run.minutes / 60)
    readings.append({"time": _iso(at), "energy_wh": energy, "power_w": 0})
    return {"time_zone": time_zone, "start": _iso(start), "stop": _iso(at), "readings": readings}


def session(start: datetime, *runs: Run, **kwargs: Any) -> SessionUsage:
    return parse_usage(session_json(start, *runs, **kwargs))


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)
