"""The cost of a session under an OCPI 2.2.1 tariff: charging periods, their prices, and
totals that a billing clerk can explain line by line.

How a session is priced (the conventions of docs/billing.md, from the 2.2.1 errata):

1. The readings cut the session into intervals; an interval in which the register rises
   (or power flows) is charging (TIME), one with a flat register and zero power is
   parking (PARKING_TIME).
2. Intervals are cut again wherever an element may switch on or off: a start/end time or
   local midnight (in the location's zone, DST included: a skipped local time begins at
   the jump, a repeated hour happens twice), a min/max duration since the start, and the
   session's energy crossing a min/max kWh (the instant interpolated from the register).
   Power and current hold between readings, so their restrictions can only change there.
3. For each piece and each dimension the first element, in list order, that prices that
   dimension and whose restrictions all hold at the piece's start is used; FLAT is the
   one in force at the session start. Adjacent pieces using the same elements form one
   charging period.
4. Volumes are priced exactly (Decimal). step_size is applied once per session to the
   billable volume (priced above zero): ENERGY on its total, booked on the last billable
   period; TIME and PARKING_TIME together, on the parking total when parking is priced,
   else on the charging time. An exact multiple of the step is not rounded up.
5. The total is rounded once, half up, to the currency's minor unit; its parts
   (dimensions, then periods) are apportioned by largest remainder so that they add up
   to it exactly. min_price / max_price then clamp the totals excl. and incl. VAT
   independently; the difference is its own line.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import exponent, round_money
from billing.session_usage import Reading, SessionUsage
from billing.tariffs import (
    WEEKDAYS,
    PriceComponent,
    ReservationRestrictionType,
    Tariff,
    TariffDimensionType,
    TariffElement,
    TariffRestrictions,
)

Dimension = TariffDimensionType
_ZERO = Decimal(0)
_ONE = Decimal(1)
_US = timedelta(microseconds=1)
_UWH = Decimal("0.000001")
_WH_PER_KWH = Decimal(1000)
_S_PER_H = Decimal(3600)
_VOLUME_PLACES = Decimal("0.0001")  # OCPI numbers carry 4 decimals
_HUNDRED = Decimal(100)
_TIMED = (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)


# ----------------------------------------------------------------------- restrictions


@dataclass(frozen=True, slots=True)
class _Moment:
    """What restrictions are evaluated against, at the start of a piece."""

    local: datetime  # wall-clock time at the location (naive)
    energy_wh: Decimal  # the session's energy so far
    power_kw: Decimal
    current_a: Decimal | None
    duration_s: Decimal  # since the session started


Predicate = Callable[[_Moment], bool]


def _clock(value: str) -> time:
    return time.fromisoformat(value)


def _compile(restrictions: TariffRestrictions | None) -> Predicate | None:
    """A predicate for ``restrictions`` (None: always holds; a reservation element never
    holds for a charging session)."""
    if restrictions is None:
        return None
    if restrictions.reservation is not None:
        return lambda moment: False
    checks = [*_calendar_checks(restrictions), *_quantity_checks(restrictions)]
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda moment: all(check(moment) for check in checks)


def _calendar_checks(r: TariffRestrictions) -> list[Predicate]:
    checks: list[Predicate] = []
    start_t = _clock(r.start_time) if r.start_time else None
    end_t = _clock(r.end_time) if r.end_time else None
    if start_t is not None or end_t is not None:
        checks.append(_time_window(start_t, end_t))
    if r.start_date is not None:
        first = date.fromisoformat(r.start_date)
        checks.append(lambda m: m.local.date() >= first)
    if r.end_date is not None:
        last = date.fromisoformat(r.end_date)
        checks.append(lambda m: m.local.date() < last)
    if r.day_of_week:
        days = frozenset(WEEKDAYS.index(d) for d in r.day_of_week)
        checks.append(lambda m: m.local.weekday() in days)
    return checks


def _quantity_checks(r: TariffRestrictions) -> list[Predicate]:
    """min inclusive, max exclusive, as OCPI defines them."""
    checks: list[Predicate] = []
    if r.min_kwh is not None:
        min_wh = r.min_kwh * _WH_PER_KWH
        checks.append(lambda m: m.energy_wh >= min_wh)
    if r.max_kwh is not None:
        max_wh = r.max_kwh * _WH_PER_KWH
        checks.append(lambda m: m.energy_wh < max_wh)
    if r.min_power is not None:
        min_kw = r.min_power
        checks.append(lambda m: m.power_kw >= min_kw)
    if r.max_power is not None:
        max_kw = r.max_power
        checks.append(lambda m: m.power_kw < max_kw)
    if r.min_current is not None:
        min_a = r.min_current
        checks.append(lambda m: m.current_a is not None and m.current_a >= min_a)
    if r.max_current is not None:
        max_a = r.max_current
        checks.append(lambda m: m.current_a is not None and m.current_a < max_a)
    if r.min_duration is not None:
        min_s = Decimal(r.min_duration)
        checks.append(lambda m: m.duration_s >= min_s)
    if r.max_duration is not None:
        max_s = Decimal(r.max_duration)
        checks.append(lambda m: m.duration_s < max_s)
    return checks


def elements_in_force(tariff: Tariff, local: datetime) -> list[tuple[int, TariffElement]]:
    """The elements whose calendar restrictions (time, date, weekday) hold at the
    location's wall-clock time ``local`` (naive), whatever their quantity restrictions:
    what a driver must be shown before charging. Reservation elements are left out."""
    moment = _Moment(local, _ZERO, _ZERO, None, _ZERO)
    found = []
    for index, element in enumerate(tariff.elements):
        r = element.restrictions
        if r is not None and r.reservation is not None:
            continue
        if r is None or all(check(moment) for check in _calendar_checks(r)):
            found.append((index, element))
    return found


def _time_window(start: time | None, end: time | None) -> Predicate:
    """Start inclusive, end exclusive; an end before the start wraps past midnight; the
    same start and end: all day."""
    if start is None:
        assert end is not None
        return lambda m: m.local.time() < end
    if end is None:
        return lambda m: m.local.time() >= start
    if start == end:
        return lambda m: True
    if start < end:
        return lambda m: start <= m.local.time() < end
    return lambda m: m.local.time() >= start or m.local.time() < end


@dataclass(frozen=True, slots=True)
class _Candidate:
    element_index: int
    component: PriceComponent
    holds: Predicate | None


class _CompiledTariff:
    """A tariff prepared for pricing many sessions: per dimension, the elements that price
    it in order, with their restrictions as predicates."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.by_dimension: dict[Dimension, list[_Candidate]] = {d: [] for d in Dimension}
        clocks: set[time] = set()
        self.midnight = False
        self.duration_cuts: set[int] = set()
        self.kwh_cuts: set[Decimal] = set()
        self.power_limits_w: list[Decimal] = []
        self.current_limits_a: list[Decimal] = []
        self.needs_local = False
        self.reservation: dict[tuple[ReservationRestrictionType, Dimension], _Candidate] = {}
        for index, element in enumerate(tariff.elements):
            holds = _compile(element.restrictions)
            kind = element.restrictions.reservation if element.restrictions else None
            if kind is not None:
                for component in element.price_components:
                    candidate = _Candidate(index, component, None)
                    self.reservation.setdefault((kind, component.type), candidate)
            seen: set[Dimension] = set()
            for component in element.price_components:
                if component.type in seen:
                    continue  # one component per dimension per element: the first
                seen.add(component.type)
                self.by_dimension[component.type].append(_Candidate(index, component, holds))
            self._collect_cuts(element, clocks)
        self.clocks = sorted(clocks)
        # The local times at which some element may switch (midnight: a date or weekday).
        self.local_clocks = tuple(sorted({*self.clocks, *([time(0, 0)] if self.midnight else [])}))
        self.power_limits_w.sort()
        self.current_limits_a.sort()

    def _collect_cuts(self, element: TariffElement, clocks: set[time]) -> None:
        r = element.restrictions
        if r is None:
            return
        for value in (r.start_time, r.end_time):
            if value is not None:
                clocks.add(_clock(value))
                self.needs_local = True
        if r.start_date or r.end_date or r.day_of_week:
            self.midnight = True
            self.needs_local = True
        for seconds in (r.min_duration, r.max_duration):
            if seconds is not None:
                self.duration_cuts.add(seconds)
        for kwh in (r.min_kwh, r.max_kwh):
            if kwh is not None:
                self.kwh_cuts.add(kwh * _WH_PER_KWH)
        for kw in (r.min_power, r.max_power):
            if kw is not None and kw * _WH_PER_KWH not in self.power_limits_w:
                self.power_limits_w.append(kw * _WH_PER_KWH)
        for amps in (r.min_current, r.max_current):
            if amps is not None and amps not in self.current_limits_a:
                self.current_limits_a.append(amps)

    def select(self, dimension: Dimension, moment: _Moment) -> _Candidate | None:
        for candidate in self.by_dimension[dimension]:
            if candidate.holds is None or candidate.holds(moment):
                return candidate
        return None


_COMPILED: dict[int, tuple[Tariff, _CompiledTariff]] = {}


def _compiled(tariff: Tariff) -> _CompiledTariff:
    # Tariffs are frozen models; pricing many sessions with one compiles it once.
    cached = _COMPILED.get(id(tariff))
    if cached is not None and cached[0] is tariff:
        return cached[1]
    compiled = _CompiledTariff(tariff)
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    _COMPILED[id(tariff)] = (tariff, compiled)
    return compiled


# ----------------------------------------------------------------------- local time cuts


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _first_at_or_after_wall(lo: datetime, hi: datetime, wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (lo, hi] whose wall-clock time is at or after ``wall`` (lo is
    before it, hi at or after): where a skipped local time begins, at the jump."""
    lo_us, span = 0, (hi - lo) // _US
    hi_us = span
    while hi_us - lo_us > 1:
        mid = (lo_us + hi_us) // 2
        if _wall(lo + mid * _US, zone) >= wall:
            hi_us = mid
        else:
            lo_us = mid
    return lo + hi_us * _US


@functools.lru_cache(maxsize=8192)
def _wall_clock_instants(day: date, clock: time, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The instants at which the location's clock shows ``clock`` on ``day``: one, two in
    a repeated hour, or the jump when the clock skips it."""
    naive = datetime.combine(day, clock)
    found: list[datetime] = []
    for fold in (0, 1):
        utc = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if _wall(utc, zone) == naive and utc not in found:
            found.append(utc)
    if not found:
        before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
        after = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        lo, hi = min(before, after), max(before, after)
        found.append(_first_at_or_after_wall(lo, hi, naive, zone))
    return tuple(found)


def _offset_changes(start: datetime, stop: datetime, zone: ZoneInfo) -> list[datetime]:
    """The instants in (start, stop) at which the zone's UTC offset changes."""
    changes: list[datetime] = []
    probe_step = timedelta(hours=6)  # offsets change at most once in far more than that
    lo = start
    lo_offset = lo.astimezone(zone).utcoffset()
    while lo < stop:
        hi = min(lo + probe_step, stop)
        hi_offset = hi.astimezone(zone).utcoffset()
        if hi_offset != lo_offset:
            a, b = 0, (hi - lo) // _US
            while b - a > 1:
                mid = (a + b) // 2
                if (lo + mid * _US).astimezone(zone).utcoffset() == lo_offset:
                    a = mid
                else:
                    b = mid
            changes.append(lo + b * _US)
        lo, lo_offset = hi, hi_offset
    return changes


@functools.lru_cache(maxsize=8192)
def _local_cuts(
    zone: ZoneInfo, first_day: date, last_day: date, clocks: tuple[time, ...]
) -> tuple[datetime, ...]:
    """Every instant from ``first_day`` to ``last_day`` (local dates) at which the
    location's clock shows one of ``clocks`` or its UTC offset changes, in order (the
    same for every session on those days: computed once)."""
    cuts: set[datetime] = set()
    day = first_day
    while day <= last_day:
        for clock in clocks:
            cuts.update(_wall_clock_instants(day, clock, zone))
        day += timedelta(days=1)
    begin = datetime.combine(first_day, time(0, 0), zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0, 0), zone).astimezone(UTC)
    cuts.update(_offset_changes(begin, end, zone))
    return tuple(sorted(cuts))


def _global_cuts(compiled: _CompiledTariff, usage: SessionUsage) -> list[datetime]:
    start, stop, zone = usage.start, usage.stop, usage.time_zone
    length_s = (stop - start).total_seconds()
    cuts = [
        start + timedelta(seconds=seconds)
        for seconds in compiled.duration_cuts
        if 0 < seconds < length_s
    ]
    if compiled.needs_local:
        clocks = compiled.local_clocks
        first_day = _wall(start, zone).date() - timedelta(days=1)
        last_day = _wall(stop, zone).date() + timedelta(days=1)
        local = _local_cuts(zone, first_day, last_day, clocks)
        cuts.extend(local[bisect.bisect_right(local, start) : bisect.bisect_left(local, stop)])
    return sorted(set(cuts)) if len(cuts) > 1 else cuts


# ----------------------------------------------------------------------- pieces


@dataclass(slots=True)
class _Piece:
    start: datetime
    end: datetime
    energy_before_wh: Decimal
    energy_wh: Decimal
    seconds: Decimal
    parking: bool
    moment: _Moment
    choice: tuple[_Candidate | None, ...] = ()


def _reading_bounds(
    compiled: _CompiledTariff,
    readings: Sequence[Reading],
    offsets: list[int],
    energies: list[int],
) -> set[int]:
    """The start, the stop, and each reading at which what restrictions can tell apart
    (parking or not; the power and current limits reached) changes."""
    bounds: set[int] = {0, offsets[-1]}
    if compiled.power_limits_w or compiled.current_limits_a:
        # What tells intervals apart: parking or not, and how many of the (sorted) power
        # and current limits the interval is at or above.
        power_limits, current_limits = compiled.power_limits_w, compiled.current_limits_a
        last_key: tuple[Any, ...] | None = None
        for i in range(len(readings) - 1):
            reading = readings[i]
            power, current = reading.power_w, reading.current_a
            key = (
                energies[i + 1] == energies[i] and not power,
                bisect.bisect_right(power_limits, power),
                None if current is None else bisect.bisect_right(current_limits, current),
            )
            if key != last_key:
                bounds.add(offsets[i])
                last_key = key
    else:  # only charging <-> parking can matter
        was_parking: bool | None = None
        for i in range(len(readings) - 1):
            parking = energies[i + 1] == energies[i] and not readings[i].power_w
            if parking is not was_parking:
                bounds.add(offsets[i])
                was_parking = parking
    return bounds


def _kwh_crossings(
    compiled: _CompiledTariff, offsets: list[int], energies: list[int]
) -> dict[int, Decimal]:
    """Where the energy reaches each kWh limit: the instant interpolated (to the µs,
    rounded down) -> the energy there, exactly the limit."""
    total_us = offsets[-1]
    exact_wh: dict[int, Decimal] = {}
    for threshold in compiled.kwh_cuts:
        i = bisect.bisect_left(energies, threshold)
        if i == 0 or i == len(energies):
            continue  # reached before the start, or never
        if energies[i] == threshold:
            at_us = offsets[i]
        else:
            before, rise = energies[i - 1], energies[i] - energies[i - 1]
            span = offsets[i] - offsets[i - 1]
            at_us = offsets[i - 1] + int((threshold - before) * span / rise)
        if 0 < at_us < total_us:
            exact_wh[at_us] = threshold
    return exact_wh


def _pieces(compiled: _CompiledTariff, usage: SessionUsage) -> list[_Piece]:
    """The session cut wherever an element may switch: where charging turns to parking
    (or back) or power or current crosses a restriction's limit (at a reading), at the
    tariff's time cuts, and where the energy crosses a kWh limit (interpolated). Between
    cuts nothing a restriction reads changes, so each piece is priced by one element per
    dimension; readings that change nothing do not cut (a session of 60 readings is
    usually a handful of pieces)."""
    readings = usage.readings
    start = usage.start
    base_wh = readings[0].energy_wh
    offsets = [(r.time - start) // _US for r in readings]  # µs since the start
    energies = [r.energy_wh - base_wh for r in readings]  # Wh since the start

    bounds = _reading_bounds(compiled, readings, offsets, energies)
    for cut in _global_cuts(compiled, usage):
        bounds.add((cut - start) // _US)
    exact_wh = _kwh_crossings(compiled, offsets, energies)
    bounds.update(exact_wh)

    def energy_at(at_us: int, j: int) -> Decimal:
        """The energy at ``at_us`` within reading interval ``j`` (µWh fixed point, so the
        pieces add up to the register's rise exactly)."""
        if at_us in exact_wh:
            return exact_wh[at_us]
        if at_us == offsets[j]:
            return Decimal(energies[j])
        if at_us == offsets[j + 1]:
            return Decimal(energies[j + 1])
        rise = energies[j + 1] - energies[j]
        fraction = Decimal(rise * (at_us - offsets[j])) / (offsets[j + 1] - offsets[j])
        return (energies[j] + fraction).quantize(_UWH)

    needs_local = compiled.needs_local
    zone = usage.time_zone
    ordered = sorted(bounds)
    pieces: list[_Piece] = []
    last = len(readings) - 2
    e_a = Decimal(0)
    for a_us, b_us in itertools.pairwise(ordered):
        j = min(bisect.bisect_right(offsets, a_us) - 1, last)  # the interval holding a
        k = min(max(bisect.bisect_left(offsets, b_us) - 1, 0), last)  # the one holding b
        e_b = energy_at(b_us, k)
        here = readings[j]
        a = start + a_us * _US
        pieces.append(
            _Piece(
                start=a,
                end=start + b_us * _US,
                energy_before_wh=e_a,
                energy_wh=e_b - e_a,
                seconds=Decimal(b_us - a_us) / 1_000_000,
                parking=energies[j + 1] == energies[j] and here.power_w == 0,
                moment=_Moment(
                    local=_wall(a, zone) if needs_local else a,
                    energy_wh=e_a,
                    power_kw=here.power_w / _WH_PER_KWH,
                    current_a=here.current_a,
                    duration_s=Decimal(a_us) / 1_000_000,
                ),
            )
        )
        e_a = e_b
    return pieces


# ----------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Amount:
    excl_vat: Decimal
    incl_vat: Decimal

    def to_json(self) -> dict[str, Decimal]:
        return {"excl_vat": self.excl_vat, "incl_vat": self.incl_vat}


@dataclass(frozen=True, slots=True)
class CostLine:
    """One priced dimension of one charging period (or the session's FLAT fee)."""

    period: int  # index into PricedSession.periods (FLAT: 0)
    dimension: Dimension
    volume: Decimal  # measured: kWh, h, or 1 for FLAT
    billed_volume: Decimal  # after step_size (the rounding is booked on the last period)
    unit_price: Decimal  # excl. VAT
    vat: Decimal | None  # percent; None: no VAT applicable
    element_index: int
    cost: Amount  # rounded share of the total (lines add up to the totals exactly)
    reservation: bool = False  # a line of the reservation before the session


@dataclass(frozen=True, slots=True)
class ChargingPeriod:
    start: datetime
    end: datetime
    parking: bool
    energy_kwh: Decimal
    seconds: Decimal
    tariff_id: str
    elements: dict[Dimension, int]
    reservation: bool = False  # the reservation before the session (RESERVATION_TIME)

    @property
    def hours(self) -> Decimal:
        return self.seconds / _S_PER_H


@dataclass(frozen=True)
class PricedSession:
    tariff: Tariff
    start: datetime
    stop: datetime
    currency: str
    periods: tuple[ChargingPeriod, ...]
    lines: tuple[CostLine, ...]
    total_energy_kwh: Decimal
    total_time_h: Decimal
    total_parking_time_h: Decimal
    by_dimension: dict[Dimension, Amount]  # rounded; with the reservation, adding up to
    reservation_cost: Amount | None  # the unclamped total
    price_limit_adjustment: Amount  # min_price / max_price
    total_cost: Amount
    exact_total: Amount = field(repr=False)  # before rounding, for the bench and tests

    def to_cdr(self) -> dict[str, Any]:
        """The OCPI 2.2.1 CDR fields this calculation determines (numbers as Decimal),
        with chargeflow's per-line breakdown under ``cost_breakdown``."""
        zero = Amount(_ZERO, _ZERO)
        flat = self.by_dimension.get(Dimension.FLAT)
        cdr: dict[str, Any] = {
            "start_date_time": ocpi_datetime(self.start),
            "end_date_time": ocpi_datetime(self.stop),
            "currency": self.currency,
            "tariffs": [self.tariff.model_dump(exclude_none=True)],
            "charging_periods": [_period_json(p) for p in self.periods],
            "total_cost": self.total_cost.to_json(),
            "total_fixed_cost": (flat or zero).to_json(),
            "total_energy": _volume(self.total_energy_kwh),
            "total_energy_cost": self.by_dimension.get(Dimension.ENERGY, zero).to_json(),
            "total_time": _volume(self.total_time_h),
            "total_time_cost": self.by_dimension.get(Dimension.TIME, zero).to_json(),
            "total_parking_time": _volume(self.total_parking_time_h),
            "total_parking_cost": self.by_dimension.get(Dimension.PARKING_TIME, zero).to_json(),
            "total_reservation_cost": (self.reservation_cost or zero).to_json(),
            "cost_breakdown": [_line_json(line, self.periods) for line in self.lines],
        }
        if self.price_limit_adjustment != zero:
            cdr["price_limit_adjustment"] = self.price_limit_adjustment.to_json()
        return cdr


def ocpi_datetime(instant: datetime) -> str:
    """UTC with ``Z``, as OCPI writes DateTime (microseconds only where a cut has them)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _volume(value: Decimal) -> Decimal:
    """A volume as OCPI writes numbers: 4 decimals at most, no trailing zeros."""
    rounded = value.quantize(_VOLUME_PLACES, rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return rounded.quantize(Decimal(1))
    return rounded.normalize()


def _period_json(period: ChargingPeriod) -> dict[str, Any]:
    dimensions: list[dict[str, Any]] = []
    if period.reservation:
        return {
            "start_date_time": ocpi_datetime(period.start),
            "dimensions": [{"type": "RESERVATION_TIME", "volume": _volume(period.hours)}],
            "tariff_id": period.tariff_id,
        }
    if not period.parking:
        dimensions.append({"type": "ENERGY", "volume": _volume(period.energy_kwh)})
    dimensions.append(
        {"type": "PARKING_TIME" if period.parking else "TIME", "volume": _volume(period.hours)}
    )
    return {
        "start_date_time": ocpi_datetime(period.start),
        "dimensions": dimensions,
        "tariff_id": period.tariff_id,
    }


def _line_json(line: CostLine, periods: Sequence[ChargingPeriod]) -> dict[str, Any]:
    return {
        "start_date_time": ocpi_datetime(periods[line.period].start) if periods else None,
        "type": line.dimension.value,
        "volume": _volume(line.volume),
        "billed_volume": _volume(line.billed_volume),
        "price": line.unit_price,
        "vat": line.vat,
        "element": line.element_index,
        "cost": line.cost.to_json(),
    }


# ----------------------------------------------------------------------- pricing


def _periods(pieces: list[_Piece], compiled: _CompiledTariff) -> list[list[_Piece]]:
    groups: list[list[_Piece]] = []
    last_key: tuple[Any, ...] | None = None
    for piece in pieces:
        choice: tuple[_Candidate | None, _Candidate | None, _Candidate | None]
        if piece.parking:
            choice = (None, None, compiled.select(Dimension.PARKING_TIME, piece.moment))
        else:
            choice = (
                compiled.select(Dimension.ENERGY, piece.moment),
                compiled.select(Dimension.TIME, piece.moment),
                None,
            )
        piece.choice = choice
        key = (piece.parking, *(None if c is None else c.element_index for c in choice))
        if key == last_key:
            groups[-1].append(piece)
        else:
            groups.append([piece])
            last_key = key
    return groups


@dataclass(slots=True)
class _Draft:
    period: int
    dimension: Dimension
    volume_units: Decimal  # Wh or s
    billed_units: Decimal
    candidate: _Candidate


def _step_up(total: Decimal, step: int) -> Decimal:
    step = max(step, 1)
    blocks = math.ceil(total / step) if total > 0 else 0
    return Decimal(blocks * step)


def _apply_steps(drafts: list[_Draft]) -> None:
    """step_size once per session on the billable volume; the extra on the last billable
    line of that dimension (the errata's reading)."""

    def billable(dimension: Dimension) -> list[_Draft]:
        return [
            d
            for d in drafts
            if d.dimension is dimension and d.candidate.component.price > 0 and d.volume_units > 0
        ]

    def round_up(lines: list[_Draft]) -> None:
        if not lines:
            return
        total = sum((d.volume_units for d in lines), _ZERO)
        extra = _step_up(total, lines[-1].candidate.component.step_size) - total
        lines[-1].billed_units += extra

    round_up(billable(Dimension.ENERGY))
    parking = billable(Dimension.PARKING_TIME)
    round_up(parking if parking else billable(Dimension.TIME))


def _with_vat(excl: Decimal, vat: Decimal | None) -> Decimal:
    return excl if vat is None else excl * (1 + vat / _HUNDRED)


def _apportion(total: Decimal, exact: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Rounded shares of ``total`` (already rounded) in proportion to the exact parts
    (none negative), adding up to it exactly: each part rounded down to the minor unit,
    the units left over to the parts with the largest remainders (ties: the earlier)."""
    if len(exact) <= 1:
        return [total] if exact else []
    places = exponent(currency)
    scaled = [x.scaleb(places) for x in exact]
    shares = [int(x) for x in scaled]  # not negative: int() rounds down
    remaining = int(total.scaleb(places)) - sum(shares)
    if remaining:
        by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - scaled[i], i))
        if remaining > 0:
            for i in by_remainder[:remaining]:
                shares[i] += 1
        else:  # the parts were rounded up past the total: take from the smallest remainders
            for i in by_remainder[::-1][:-remaining]:
                shares[i] -= 1
    return [Decimal(share).scaleb(-places) for share in shares]


RESERVATION = "RESERVATION"  # the cost group of a reservation's lines (FLAT and TIME)
_GROUP_ORDER: tuple[str, ...] = (*(d.value for d in Dimension), RESERVATION)


def _rounded(
    groups: list[str], excl: list[Decimal], incl: list[Decimal], currency: str
) -> tuple[dict[str, Amount], list[Amount]]:
    """The totals rounded once, apportioned to the groups (the tariff dimensions and the
    reservation) and then to their lines, so that every level adds up exactly:
    (rounded per group, rounded per line)."""
    members: dict[str, list[int]] = {}
    for n, group in enumerate(groups):
        members.setdefault(group, []).append(n)
    present = [g for g in _GROUP_ORDER if g in members]
    sums_excl = [sum((excl[n] for n in members[g]), _ZERO) for g in present]
    sums_incl = [sum((incl[n] for n in members[g]), _ZERO) for g in present]
    group_excl = _apportion(round_money(sum(sums_excl, _ZERO), currency), sums_excl, currency)
    group_incl = _apportion(round_money(sum(sums_incl, _ZERO), currency), sums_incl, currency)
    by_group: dict[str, Amount] = {}
    lines: list[Amount] = [Amount(_ZERO, _ZERO)] * len(groups)
    for g, e, i in zip(present, group_excl, group_incl, strict=True):
        by_group[g] = Amount(e, i)
        rows = members[g]
        shares_excl = _apportion(e, [excl[n] for n in rows], currency)
        shares_incl = _apportion(i, [incl[n] for n in rows], currency)
        for n, line_excl, line_incl in zip(rows, shares_excl, shares_incl, strict=True):
            lines[n] = Amount(line_excl, line_incl)
    return by_group, lines


@dataclass(slots=True)
class _Line:
    """A line before rounding: its cost group, the volumes and the exact cost."""

    group: str
    dimension: Dimension
    period: int
    volume: Decimal
    billed: Decimal
    excl: Decimal
    candidate: _Candidate


def _charging(
    compiled: _CompiledTariff, usage: SessionUsage, first_period: int
) -> tuple[list[ChargingPeriod], list[_Line], Decimal]:
    """The charging session's periods and lines, and its parking seconds."""
    if not usage.charged:
        return [], [], _ZERO
    pieces = _pieces(compiled, usage)
    periods: list[ChargingPeriod] = []
    drafts: list[_Draft] = []
    for index, group in enumerate(_periods(pieces, compiled), start=first_period):
        first = group[0]
        energy_wh = sum((p.energy_wh for p in group), _ZERO)
        seconds = sum((p.seconds for p in group), _ZERO)
        energy_c, time_c, parking_c = first.choice
        elements: dict[Dimension, int] = {}
        for dimension, candidate, units in (
            (Dimension.ENERGY, energy_c, energy_wh),
            (Dimension.TIME, time_c, seconds),
            (Dimension.PARKING_TIME, parking_c, seconds),
        ):
            if candidate is not None:
                elements[dimension] = candidate.element_index
                drafts.append(_Draft(index, dimension, units, units, candidate))
        periods.append(
            ChargingPeriod(
                start=first.start,
                end=group[-1].end,
                parking=first.parking,
                energy_kwh=energy_wh / _WH_PER_KWH,
                seconds=seconds,
                tariff_id=compiled.tariff.id,
                elements=elements,
            )
        )
    _apply_steps(drafts)
    lines = []
    for d in drafts:
        per_unit = _WH_PER_KWH if d.dimension is Dimension.ENERGY else _S_PER_H
        billed = d.billed_units / per_unit
        lines.append(
            _Line(
                d.dimension.value,
                d.dimension,
                d.period,
                d.volume_units / per_unit,
                billed,
                billed * d.candidate.component.price,
                d.candidate,
            )
        )
    if compiled.by_dimension[Dimension.FLAT]:
        at_start = (
            pieces[0].moment
            if pieces
            else _Moment(_wall(usage.start, usage.time_zone), _ZERO, _ZERO, None, _ZERO)
        )
        flat = compiled.select(Dimension.FLAT, at_start)
        if flat is not None:
            price = flat.component.price
            lines.append(
                _Line(Dimension.FLAT.value, Dimension.FLAT, first_period, _ONE, _ONE, price, flat)
            )
    return periods, lines, sum((p.seconds for p in pieces if p.parking), _ZERO)


def _reservation(
    compiled: _CompiledTariff, usage: SessionUsage
) -> tuple[list[ChargingPeriod], list[_Line]]:
    """The reservation's period and lines: its FLAT fee and its TIME, from the first
    RESERVATION element pricing each (an expired reservation: the RESERVATION_EXPIRES
    element's first, else the RESERVATION one), TIME rounded to its own step_size."""
    reservation = usage.reservation
    if reservation is None:
        return [], []
    kinds = [ReservationRestrictionType.RESERVATION]
    if reservation.expired:
        kinds.insert(0, ReservationRestrictionType.RESERVATION_EXPIRES)
    seconds = Decimal((reservation.end - reservation.start) // _US) / 1_000_000
    lines: list[_Line] = []
    elements: dict[Dimension, int] = {}
    for dimension in (Dimension.TIME, Dimension.FLAT):
        candidate = next(
            (c for kind in kinds if (c := compiled.reservation.get((kind, dimension)))), None
        )
        if candidate is None:
            continue
        elements[dimension] = candidate.element_index
        component = candidate.component
        if dimension is Dimension.FLAT:
            lines.append(_Line(RESERVATION, dimension, 0, _ONE, _ONE, component.price, candidate))
            continue
        billed_s = _step_up(seconds, component.step_size) if component.price > 0 else seconds
        billed = billed_s / _S_PER_H
        lines.append(
            _Line(
                RESERVATION,
                dimension,
                0,
                seconds / _S_PER_H,
                billed,
                billed * component.price,
                candidate,
            )
        )
    period = ChargingPeriod(
        start=reservation.start,
        end=reservation.end,
        parking=False,
        energy_kwh=_ZERO,
        seconds=seconds,
        tariff_id=compiled.tariff.id,
        elements=elements,
        reservation=True,
    )
    return [period], lines


def price_session(tariff: Tariff, usage: SessionUsage) -> PricedSession:
    """The cost of ``usage`` under ``tariff`` (checked input: :func:`parse_usage`,
    :func:`billing.tariffs.parse_tariff`)."""
    compiled = _compiled(tariff)
    currency = tariff.currency
    reserved, reservation_lines = _reservation(compiled, usage)
    periods, charging_lines, parking_s = _charging(compiled, usage, len(reserved))
    exact = [*reservation_lines, *charging_lines]
    exact_excl = [line.excl for line in exact]
    exact_incl = [_with_vat(line.excl, line.candidate.component.vat) for line in exact]
    by_group, line_costs = _rounded(
        [line.group for line in exact], exact_excl, exact_incl, currency
    )
    total_excl = sum((a.excl_vat for a in by_group.values()), _ZERO)
    total_incl = sum((a.incl_vat for a in by_group.values()), _ZERO)
    lines = tuple(
        CostLine(
            period=line.period,
            dimension=line.dimension,
            volume=line.volume,
            billed_volume=line.billed,
            unit_price=line.candidate.component.price,
            vat=line.candidate.component.vat,
            element_index=line.candidate.element_index,
            cost=line_costs[n],
            reservation=line.group == RESERVATION,
        )
        for n, line in enumerate(exact)
    )
    exact_total = Amount(sum(exact_excl, _ZERO), sum(exact_incl, _ZERO))
    clamped = _clamp(tariff, Amount(total_excl, total_incl), exact_total)
    adjustment = Amount(clamped.excl_vat - total_excl, clamped.incl_vat - total_incl)
    return PricedSession(
        tariff=tariff,
        start=usage.start,
        stop=usage.stop,
        currency=currency,
        periods=(*reserved, *periods),
        lines=lines,
        total_energy_kwh=Decimal(usage.energy_wh) / _WH_PER_KWH,
        total_time_h=Decimal((usage.stop - usage.start) // _US) / 1_000_000 / _S_PER_H
        if usage.charged
        else _ZERO,
        total_parking_time_h=parking_s / _S_PER_H,
        by_dimension={Dimension(g): a for g, a in by_group.items() if g != RESERVATION},
        reservation_cost=by_group.get(RESERVATION),
        price_limit_adjustment=adjustment,
        total_cost=clamped,
        exact_total=exact_total,
    )


def _clamp(tariff: Tariff, total: Amount, exact: Amount) -> Amount:
    """min_price / max_price on the totals excl. and incl. VAT, each on its own, as
    OCPI says both apply; a limit given only excl. VAT moves the incl. total with it, at
    the session's own VAT ratio."""
    currency = tariff.currency
    excl, incl = total.excl_vat, total.incl_vat
    ratio = exact.incl_vat / exact.excl_vat if exact.excl_vat > 0 else Decimal(1)
    new_excl, new_incl = excl, incl
    low, high = tariff.min_price, tariff.max_price
    if low is not None:
        if excl < low.excl_vat:
            new_excl = round_money(low.excl_vat, currency)
        if low.incl_vat is not None:
            new_incl = max(new_incl, round_money(low.incl_vat, currency))
        elif excl < low.excl_vat:
            new_incl = max(new_incl, round_money(low.excl_vat * ratio, currency))
    if high is not None:
        if excl > high.excl_vat:
            new_excl = round_money(high.excl_vat, currency)
        if high.incl_vat is not None:
            new_incl = min(new_incl, round_money(high.incl_vat, currency))
        elif excl > high.excl_vat:
            new_incl = min(new_incl, round_money(high.excl_vat * ratio, currency))
    return Amount(new_excl, new_incl)
