"""A closed session's meter samples as what the cost calculation prices
(:class:`billing.session_usage.SessionUsage`).

The billed energy is the session's own figure (``SessionClosed.energy_wh``, from the
register of the meter the sessions flow chose: the station's or the billing smart
meter's). The samples between start and stop only say *when* it flowed, which time-of-use
and kWh restrictions need: their register values are placed between the session's start
and stop registers (a sample outside that range, e.g. from a meter reset, is dropped),
scaled when the billed energy comes from another meter than the samples. Power and
current hold from a sample to the next; where a station reports no power, the interval's
average power from the register stands in (a flat register then reads as parking).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
>>> samples = [Sample(t0 + timedelta(minutes=30), ENERGY_REGISTER, "", "Wh", Decimal(5500)),
...            Sample(t0 + timedelta(minutes=30), POWER, "", "W", Decimal(11000))]
>>> usage = usage_from_samples(
...     started_at=t0, stopped_at=t0 + timedelta(hours=1), meter_start_wh=0,
...     meter_stop_wh=11000, energy_wh=11000, samples=samples, time_zone="Europe/Amsterdam")
>>> [(r.energy_wh, r.power_w) for r in usage.readings]
[(0, Decimal('11000')), (5500, Decimal('11000')), (11000, Decimal('0'))]
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from billing.session_usage import Reading, SessionUsage, UsageError, check_usage
from bus.measurands import CURRENT, ENERGY_REGISTER, POWER, to_w, to_wh


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored meter sample (``meter_samples``): its unit as the station sent it."""

    measured_at: datetime
    measurand: str
    phase: str
    unit: str
    value: Decimal


def _by_instant(
    samples: Iterable[Sample], started: datetime, stopped: datetime
) -> dict[datetime, dict[str, Decimal]]:
    """Per instant inside the session: register (Wh), power (W, phases summed when no
    total), current (A, summed over phases)."""
    totals: dict[datetime, dict[str, Decimal]] = {}
    phased: dict[datetime, dict[str, Decimal]] = {}
    for s in samples:
        if not started < s.measured_at < stopped:
            continue
        if s.measurand == ENERGY_REGISTER and not s.phase:
            wh = to_wh(s.value, s.unit or "Wh", 0)
            if wh is not None:
                totals.setdefault(s.measured_at, {})["energy"] = wh
        elif s.measurand == POWER:
            w = to_w(s.value, s.unit or "W", 0)
            if w is None:
                continue
            target = phased if s.phase else totals
            slot = target.setdefault(s.measured_at, {})
            slot["power"] = slot.get("power", Decimal(0)) + w
        elif s.measurand == CURRENT and s.phase:
            slot = phased.setdefault(s.measured_at, {})
            slot["current"] = slot.get("current", Decimal(0)) + s.value
    for at, values in phased.items():
        slot = totals.setdefault(at, {})
        for name, value in values.items():
            slot.setdefault(name, value)
    return totals


def usage_from_samples(
    *,
    started_at: datetime,
    stopped_at: datetime,
    meter_start_wh: int | None,
    meter_stop_wh: int | None,
    energy_wh: int,
    samples: Iterable[Sample],
    time_zone: str,
) -> SessionUsage:
    """The priced session: readings at start and stop with the billed energy between
    them, and the samples' register, power and current in between."""
    if stopped_at < started_at:
        raise UsageError("the session stopped before it started")
    if energy_wh < 0:
        raise UsageError("a session cannot bill negative energy")
    at = _by_instant(samples, started_at, stopped_at)
    start_wh = Decimal(meter_start_wh or 0)
    stop_wh = Decimal(meter_stop_wh) if meter_stop_wh is not None else start_wh + energy_wh
    span = stop_wh - start_wh
    scale = Decimal(energy_wh) / span if span > 0 else Decimal(0)

    times = [started_at]
    energies = [0]
    for instant in sorted(at):
        register = at[instant].get("energy")
        if register is None or not start_wh <= register <= stop_wh:
            continue
        billed = int(((register - start_wh) * scale).to_integral_value(ROUND_HALF_UP))
        if billed >= energies[-1]:
            times.append(instant)
            energies.append(min(billed, energy_wh))
    if stopped_at > started_at:
        times.append(stopped_at)
        energies.append(energy_wh)

    power_times = sorted(t for t, v in at.items() if "power" in v)
    readings = []
    for i, instant in enumerate(times):
        if i == len(times) - 1:
            readings.append(Reading(instant, energies[i], Decimal(0)))
            continue
        values = _latest(at, power_times, instant)
        power = values.get("power") if values else None
        if power is None:  # the register's average power over the interval
            seconds = Decimal((times[i + 1] - instant).total_seconds())
            rise = energies[i + 1] - energies[i]
            power = (Decimal(rise) * 3600 / seconds).quantize(Decimal(1)) if seconds else Decimal(0)
        readings.append(
            Reading(
                instant,
                energies[i],
                max(power, Decimal(0)),
                values.get("current") if values else None,
            )
        )
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"unknown time zone {time_zone!r}") from exc
    return check_usage(SessionUsage(zone, started_at, stopped_at, tuple(readings)))


def corrected_span(
    samples: Iterable[Sample],
    *,
    started_at: datetime,
    stopped_at: datetime,
    meter_start_wh: int | None,
    meter_stop_wh: int | None,
    energy_wh: int,
) -> tuple[int, int] | None:
    """The register span a clerk's corrected ``energy_wh`` is spread over, so that it
    flows when the samples say energy flowed (:func:`usage_from_samples` scales the
    samples from this span onto the billed energy): the session's start and stop
    registers. A missing end is estimated from the corrected energy, but never inside
    the samples' registers (the samples are the shape we know). None when there is no
    rising span: bill it linearly.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    >>> mid = [Sample(t0 + timedelta(minutes=30), ENERGY_REGISTER, "", "Wh", Decimal(5500))]
    >>> def span(meter_start, meter_stop, energy, samples=mid):
    ...     return corrected_span(samples, started_at=t0, stopped_at=t0 + timedelta(hours=1),
    ...         meter_start_wh=meter_start, meter_stop_wh=meter_stop, energy_wh=energy)
    >>> span(0, 11000, 8000)  # both registers: the samples scaled from them
    (0, 11000)
    >>> span(0, None, 8000), span(0, None, 4000)  # no stop: the energy, or the samples
    ((0, 8000), (0, 5500))
    >>> span(None, 9000, 8000, samples=[]) is None  # nothing to place: linear
    True
    """
    registers = sorted(
        values["energy"]
        for values in _by_instant(samples, started_at, stopped_at).values()
        if "energy" in values
    )
    start = None if meter_start_wh is None else Decimal(meter_start_wh)
    stop = None if meter_stop_wh is None else Decimal(meter_stop_wh)
    if start is None and registers:
        start = registers[0] if stop is None else min(registers[0], stop - energy_wh)
    if start is None:
        return None
    if stop is None:
        stop = max(start + energy_wh, registers[-1]) if registers else start + energy_wh
    return (int(start), int(stop)) if stop > start else None


def _latest(
    at: dict[datetime, dict[str, Decimal]], power_times: list[datetime], instant: datetime
) -> dict[str, Decimal] | None:
    """The power/current sample at ``instant`` or the last one before it."""
    i = bisect.bisect_right(power_times, instant)
    return at[power_times[i - 1]] if i else None
