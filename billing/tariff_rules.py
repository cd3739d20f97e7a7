"""A tariff prepared for pricing sessions (billing/cost.py): its restrictions as
predicates on a :class:`Moment` (the wall-clock time at the location, the energy, power,
current and duration at the start of a piece), per dimension the elements that price it
in list order, and the instants and limits at which an element may switch on or off.
Compiled once per tariff and reused for every session priced with it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

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
# As constants: a member looked up on its Enum class is several times slower.
_ENERGY, _TIME, _PARKING = Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME
_ZERO = Decimal(0)
_WH_PER_KWH = Decimal(1000)
_HUNDRED = Decimal(100)


@dataclass(slots=True)  # not frozen: one per piece, and frozen slots are slow to build
class Moment:
    """What restrictions are evaluated against, at the start of a piece."""

    local: datetime  # wall-clock time at the location (naive)
    energy_wh: Decimal  # the session's energy so far
    power_kw: Decimal
    current_a: Decimal | None
    duration_s: Decimal  # since the session started


Predicate = Callable[[Moment], bool]


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
    moment = Moment(local, _ZERO, _ZERO, None, _ZERO)
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


@dataclass(frozen=True, slots=True, eq=False)  # equal only to itself: one per dimension+element
class Candidate:
    element_index: int
    component: PriceComponent
    holds: Predicate | None
    # excl. VAT -> incl. VAT: 1 + vat / 100 (None: no VAT), worked out once per tariff.
    vat_factor: Decimal | None = field(init=False)

    def __post_init__(self) -> None:
        vat = self.component.vat
        object.__setattr__(self, "vat_factor", None if vat is None else 1 + vat / _HUNDRED)


# The ENERGY, TIME and PARKING_TIME candidates a piece is priced by (None: not priced).
Choice = tuple[Candidate | None, Candidate | None, Candidate | None]


class CompiledTariff:
    """A tariff prepared for pricing many sessions: per dimension, the elements that price
    it in order, with their restrictions as predicates."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.by_dimension: dict[Dimension, list[Candidate]] = {d: [] for d in Dimension}
        clocks: set[time] = set()
        self.midnight = False
        self.duration_cuts: set[int] = set()
        self.kwh_cuts: set[Decimal] = set()
        self.power_limits_w: list[Decimal] = []
        self.current_limits_a: list[Decimal] = []
        self.needs_local = False
        self.reservation: dict[tuple[ReservationRestrictionType, Dimension], Candidate] = {}
        for index, element in enumerate(tariff.elements):
            holds = _compile(element.restrictions)
            kind = element.restrictions.reservation if element.restrictions else None
            if kind is not None:
                for component in element.price_components:
                    candidate = Candidate(index, component, None)
                    self.reservation.setdefault((kind, component.type), candidate)
            seen: set[Dimension] = set()
            for component in element.price_components:
                if component.type in seen:
                    continue  # one component per dimension per element: the first
                seen.add(component.type)
                self.by_dimension[component.type].append(Candidate(index, component, holds))
            self._collect_cuts(element, clocks)
        self.clocks = sorted(clocks)
        # The local times at which some element may switch (midnight: a date or weekday).
        self.local_clocks = tuple(sorted({*self.clocks, *([time(0, 0)] if self.midnight else [])}))
        self.power_limits_w.sort()
        self.current_limits_a.sort()
        self.fixed_choice = self._fixed_choice()
        self.classes = _MomentClasses(tariff)
        self.choices: dict[tuple[Any, ...], Choice] = {}  # per moment class (see periods)

    def _fixed_choice(self) -> tuple[Choice, Choice] | None:
        """(charging, parking) choices when no restriction can change them (the first
        candidate of each timed dimension holds always): pieces then need no Moment."""
        first: dict[Dimension, Candidate | None] = {}
        for dimension in (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME):
            candidates = self.by_dimension[dimension]
            if candidates and candidates[0].holds is not None:
                return None
            first[dimension] = candidates[0] if candidates else None
        charging = (first[Dimension.ENERGY], first[Dimension.TIME], None)
        return charging, (None, None, first[Dimension.PARKING_TIME])

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

    def choice(self, parking: bool, moment: Moment) -> Choice:
        if parking:
            return None, None, self.select(_PARKING, moment)
        return self.select(_ENERGY, moment), self.select(_TIME, moment), None

    def select(self, dimension: Dimension, moment: Moment) -> Candidate | None:
        for candidate in self.by_dimension[dimension]:
            if candidate.holds is None or candidate.holds(moment):
                return candidate
        return None


class _MomentClasses:
    """What a tariff's restrictions can tell apart at a moment: the clocks, dates,
    weekdays and the energy, power, current and duration limits they compare with. Two
    moments on the same side of each of them satisfy the same restrictions, so a choice
    found for one holds for the other."""

    def __init__(self, tariff: Tariff) -> None:
        clocks: set[time] = set()
        dates: set[date] = set()
        kwh: set[Decimal] = set()
        power_kw: set[Decimal] = set()
        current_a: set[Decimal] = set()
        duration_us: set[int] = set()
        self.weekday = False
        for element in tariff.elements:
            r = element.restrictions
            if r is None:
                continue
            clocks.update(_clock(v) for v in (r.start_time, r.end_time) if v is not None)
            dates.update(date.fromisoformat(v) for v in (r.start_date, r.end_date) if v)
            kwh.update(v * _WH_PER_KWH for v in (r.min_kwh, r.max_kwh) if v is not None)
            power_kw.update(v for v in (r.min_power, r.max_power) if v is not None)
            current_a.update(v for v in (r.min_current, r.max_current) if v is not None)
            seconds = (r.min_duration, r.max_duration)
            duration_us.update(v * 1_000_000 for v in seconds if v is not None)
            self.weekday = self.weekday or bool(r.day_of_week)
        self.clocks, self.dates, self.kwh = sorted(clocks), sorted(dates), sorted(kwh)
        self.power_kw, self.current_a = sorted(power_kw), sorted(current_a)
        self.duration_us = sorted(duration_us)

    def key(
        self,
        parking: bool,
        local: datetime | None,
        energy_wh: Decimal,
        power_w: Decimal,
        current_a: Decimal | None,
        since_start_us: int,
    ) -> tuple[Any, ...]:
        """The class of a moment (``local``: None when no restriction reads the clock);
        the power as :class:`Moment` holds it (kW), compared as the restrictions do."""
        key: list[Any] = [parking]
        if local is not None:
            key.append(bisect.bisect_right(self.clocks, local.time()))
            if self.weekday:
                key.append(local.weekday())
            if self.dates:
                key.append(bisect.bisect_right(self.dates, local.date()))
        if self.kwh:
            key.append(bisect.bisect_right(self.kwh, energy_wh))
        if self.power_kw:
            key.append(bisect.bisect_right(self.power_kw, power_w / _WH_PER_KWH))
        if self.current_a:
            key.append(
                None if current_a is None else bisect.bisect_right(self.current_a, current_a)
            )
        if self.duration_us:
            key.append(bisect.bisect_right(self.duration_us, since_start_us))
        return tuple(key)


_COMPILED: dict[int, tuple[Tariff, CompiledTariff]] = {}


def compiled(tariff: Tariff) -> CompiledTariff:
    # Tariffs are frozen models; pricing many sessions with one compiles it once.
    cached = _COMPILED.get(id(tariff))
    if cached is not None and cached[0] is tariff:
        return cached[1]
    prepared = CompiledTariff(tariff)
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    _COMPILED[id(tariff)] = (tariff, prepared)
    return prepared
