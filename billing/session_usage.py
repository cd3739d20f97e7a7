"""What a session used, as the cost calculation reads it: the location's time zone, the
start and stop, and the meter readings between them (the cumulative register, and the
power and current that hold from one reading to the next).

This is the input of ``chargeflow tariff price --session`` and of
``POST /v1/tariffs/preview``, and what the billing flow builds from a closed session's
samples.

>>> usage = parse_usage({"time_zone": "Europe/Amsterdam",
...     "start": "2026-03-01T10:00:00Z", "stop": "2026-03-01T11:00:00Z",
...     "readings": [{"time": "2026-03-01T10:00:00Z", "energy_wh": 1000, "power_w": 11000},
...                  {"time": "2026-03-01T11:00:00Z", "energy_wh": 12000, "power_w": 0}]})
>>> usage.energy_wh
11000
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bus.times import parse_rfc3339

# Longer than any real session (a car left at an airport for weeks); bounds the work of
# pricing one.
MAX_SESSION = timedelta(days=92)
# Registers, power and current far beyond any charge point's.
MAX_QUANTITY = Decimal(10) ** 12


class UsageError(ValueError):
    """The session is not one the calculation can price; the message says why."""


@dataclass(frozen=True, slots=True)
class Reading:
    time: datetime
    energy_wh: int  # the cumulative register
    power_w: Decimal  # from this reading to the next
    current_a: Decimal | None = None  # summed over phases, from this reading to the next


@dataclass(frozen=True, slots=True)
class Reservation:
    """The EVSE held for the driver from ``start`` to ``end``: the session began at
    ``end``, or the reservation ``expired`` without one."""

    start: datetime
    end: datetime
    expired: bool = False


@dataclass(frozen=True, slots=True)
class SessionUsage:
    time_zone: ZoneInfo
    start: datetime
    stop: datetime
    readings: tuple[Reading, ...]  # empty only for a reservation that expired
    reservation: Reservation | None = None

    @property
    def charged(self) -> bool:
        """Whether a charging session took place (not only an expired reservation)."""
        return bool(self.readings)

    @property
    def energy_wh(self) -> int:
        if not self.readings:
            return 0
        return self.readings[-1].energy_wh - self.readings[0].energy_wh


def _check_reservation(reservation: Reservation, session_start: datetime) -> None:
    if reservation.end < reservation.start or reservation.end - reservation.start > MAX_SESSION:
        raise UsageError("the reservation must end after it starts, within 92 days")
    if reservation.end > session_start and not reservation.expired:
        raise UsageError("a reservation ends when its session starts, not after")


def _check_readings(readings: tuple[Reading, ...], start: datetime, stop: datetime) -> None:
    if readings[0].time != start:
        raise UsageError("the first reading must be at start (the register when it began)")
    if readings[-1].time != stop:
        raise UsageError("the last reading must be at stop")
    for before, after in itertools.pairwise(readings):
        if after.time <= before.time:
            raise UsageError(f"readings must be in time order, one per instant: {after.time}")
        if after.energy_wh < before.energy_wh:
            raise UsageError(
                f"the energy register went backwards at {after.time.isoformat()} "
                f"({before.energy_wh} -> {after.energy_wh} Wh)"
            )
    for reading in readings:
        for value in (reading.power_w, reading.current_a, Decimal(reading.energy_wh)):
            if value is not None and not 0 <= value < MAX_QUANTITY:
                raise UsageError(
                    f"energy_wh, power_w and current_a must be between 0 and 10^12 "
                    f"({reading.time.isoformat()})"
                )


def check_usage(usage: SessionUsage) -> SessionUsage:
    """``usage`` if the calculation can price it; :class:`UsageError` otherwise."""
    if usage.start.utcoffset() is None or usage.stop.utcoffset() is None:
        raise UsageError("start and stop need a time zone offset (UTC: Z)")
    if usage.stop < usage.start:
        raise UsageError("stop is before start")
    if not (usage.start.year >= 1970 and usage.stop.year < 9000):
        raise UsageError("start and stop must lie between 1970 and 9000")
    if usage.stop - usage.start > MAX_SESSION:
        raise UsageError(f"a session longer than {MAX_SESSION.days} days cannot be priced")
    reservation = usage.reservation
    if reservation is not None:
        _check_reservation(reservation, usage.start)
    readings = usage.readings
    if not readings:
        if reservation is not None and reservation.expired:
            return usage  # nothing was charged: only the reservation is priced
        raise UsageError("a session needs its meter readings (at least one, at start)")
    _check_readings(readings, usage.start, usage.stop)
    return usage


def _number(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise UsageError(f"{what} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise UsageError(f"{what} must be finite")
    return number


def _instant(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be an RFC 3339 time")
    try:
        instant = parse_rfc3339(value)
    except ValueError:
        raise UsageError(f"{what} must be an RFC 3339 time with an offset, got {value!r}") from None
    if instant.utcoffset() is None:
        raise UsageError(f"{what} needs a time zone offset (UTC: Z), got {value!r}")
    return instant


def parse_usage(data: object) -> SessionUsage:
    """The session JSON (``{"time_zone", "start", "stop", "readings": [{"time",
    "energy_wh", "power_w", "current_a"?}]}``) as a checked :class:`SessionUsage`."""
    if not isinstance(data, Mapping):
        raise UsageError("the session must be a JSON object")
    zone_name = data.get("time_zone")
    if not isinstance(zone_name, str) or not zone_name:
        raise UsageError("time_zone must be an IANA time zone name such as Europe/Amsterdam")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time_zone {zone_name!r}") from None
    raw = data.get("readings")
    if not isinstance(raw, list):
        raise UsageError("readings must be a list")
    readings = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise UsageError(f"readings[{index}] must be an object")
        energy = item.get("energy_wh")
        if isinstance(energy, bool) or not isinstance(energy, int):
            raise UsageError(f"readings[{index}].energy_wh must be an integer (Wh)")
        current = item.get("current_a")
        readings.append(
            Reading(
                time=_instant(item.get("time"), f"readings[{index}].time"),
                energy_wh=energy,
                power_w=_number(item.get("power_w"), f"readings[{index}].power_w"),
                current_a=None
                if current is None
                else _number(current, f"readings[{index}].current_a"),
            )
        )
    return check_usage(
        SessionUsage(
            time_zone=zone,
            start=_instant(data.get("start"), "start"),
            stop=_instant(data.get("stop"), "stop"),
            readings=tuple(readings),
            reservation=_reservation(data.get("reservation")),
        )
    )


def _reservation(data: object) -> Reservation | None:
    """``{"start", "end", "expired"?}``: the reservation before the session, if any."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise UsageError("reservation must be an object {start, end, expired}")
    expired = data.get("expired", False)
    if not isinstance(expired, bool):
        raise UsageError("reservation.expired must be true or false")
    return Reservation(
        start=_instant(data.get("start"), "reservation.start"),
        end=_instant(data.get("end"), "reservation.end"),
        expired=expired,
    )
