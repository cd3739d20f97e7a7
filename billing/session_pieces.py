"""A session cut into pieces for pricing (billing/cost.py): wherever an element of the
tariff may switch on or off, and nowhere else, so that each piece is priced by one
element per dimension; adjacent pieces priced alike form one charging period.

Local-time cuts (a start/end time, local midnight) are found in the location's zone, DST
included: a skipped local time begins at the jump, a repeated hour happens twice. They
are the same for every session on the same days, so they are computed once per zone,
days and clocks (cached).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.session_usage import Reading, SessionUsage
from billing.tariff_rules import Choice, CompiledTariff, Moment

_US = timedelta(microseconds=1)
_UWH = Decimal("0.000001")
_WH_PER_KWH = Decimal(1000)
_ZERO = Decimal(0)


def wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` as the location's clock shows it (naive)."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _first_at_or_after_wall(
    lo: datetime, hi: datetime, target: datetime, zone: ZoneInfo
) -> datetime:
    """The first instant in (lo, hi] whose wall-clock time is at or after ``target`` (lo
    is before it, hi at or after): where a skipped local time begins, at the jump."""
    lo_us, span = 0, (hi - lo) // _US
    hi_us = span
    while hi_us - lo_us > 1:
        mid = (lo_us + hi_us) // 2
        if wall(lo + mid * _US, zone) >= target:
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
        if wall(utc, zone) == naive and utc not in found:
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


def _global_cuts(compiled: CompiledTariff, usage: SessionUsage) -> list[datetime]:
    start, stop, zone = usage.start, usage.stop, usage.time_zone
    length_s = (stop - start).total_seconds()
    cuts = [
        start + timedelta(seconds=seconds)
        for seconds in compiled.duration_cuts
        if 0 < seconds < length_s
    ]
    if compiled.needs_local:
        clocks = compiled.local_clocks
        first_day = wall(start, zone).date() - timedelta(days=1)
        last_day = wall(stop, zone).date() + timedelta(days=1)
        local = _local_cuts(zone, first_day, last_day, clocks)
        cuts.extend(local[bisect.bisect_right(local, start) : bisect.bisect_left(local, stop)])
    return sorted(set(cuts)) if len(cuts) > 1 else cuts


@dataclass(slots=True)
class Piece:
    """A stretch of the session in which nothing a restriction reads changes: from
    ``start_us`` to ``end_us`` (µs since the session start), the session's energy from
    ``energy_before_wh`` to ``energy_after_wh`` (Wh since the start, exact)."""

    start_us: int
    end_us: int
    energy_before_wh: Decimal
    energy_after_wh: Decimal
    parking: bool
    reading: int  # the reading whose power and current hold at the start


@dataclass(slots=True)
class Period:
    """Adjacent pieces priced by the same elements: one charging period."""

    first: Piece
    last: Piece
    choice: Choice


def _reading_bounds(
    compiled: CompiledTariff, readings: Sequence[Reading], parking: list[bool]
) -> list[int]:
    """The readings at which what restrictions can tell apart (parking or not; how many
    of the sorted power and current limits the interval is at or above) changes."""
    power_limits, current_limits = compiled.power_limits_w, compiled.current_limits_a
    keys: list[Any] = parking
    if power_limits or current_limits:
        intervals = readings[:-1]
        powers = [bisect.bisect_right(power_limits, r.power_w) for r in intervals]
        currents = [
            None if r.current_a is None else bisect.bisect_right(current_limits, r.current_a)
            for r in intervals
        ]
        keys = list(zip(parking, powers, currents, strict=True))
    # Where the key differs from the interval before (compared in C: this runs over every
    # reading of every session).
    changed = map(operator.ne, keys, [None, *keys])
    return list(itertools.compress(range(len(keys)), changed))


class _Cuts:
    """The instants a session is cut at, as µs since its start, each with the reading
    interval holding it and whether it is a reading's own instant. Offsets are worked out
    only for the readings that need one (a session has ~60, and a handful of cuts)."""

    def __init__(self, usage: SessionUsage) -> None:
        self.readings, self.start = usage.readings, usage.start
        self.at: dict[int, tuple[int, bool]] = {}  # µs -> (reading interval, at a reading)
        self.exact_wh: dict[int, Decimal] = {}  # where the energy reaches a kWh limit

    def offset(self, i: int) -> int:
        return (self.readings[i].time - self.start) // _US

    def add_reading(self, i: int) -> None:
        self.at[self.offset(i)] = (i, True)

    def add_instants(self, instants: list[datetime]) -> None:
        times = [r.time for r in self.readings]
        for instant in instants:
            i = bisect.bisect_right(times, instant) - 1
            self.at[(instant - self.start) // _US] = (i, times[i] == instant)

    def add_kwh_crossings(self, compiled: CompiledTariff, registers: list[int]) -> None:
        """Where the energy reaches each kWh limit: the instant interpolated (to the µs,
        rounded down), the energy there exactly the limit."""
        base = registers[0]
        total_us = self.offset(len(registers) - 1)
        for threshold in compiled.kwh_cuts:
            i = bisect.bisect_left(registers, base + threshold)
            if i == 0 or i == len(registers):
                continue  # reached before the start, or never
            if registers[i] - base == threshold:
                at_us, where = self.offset(i), (i, True)
            else:
                before, rise = registers[i - 1] - base, registers[i] - registers[i - 1]
                begin = self.offset(i - 1)
                span = self.offset(i) - begin
                at_us = begin + int((threshold - before) * span / rise)
                where = (i - 1, at_us == begin)
            if 0 < at_us < total_us:
                self.exact_wh[at_us] = threshold
                self.at[at_us] = where

    def energy_at(self, at_us: int, i: int, at_reading: bool, registers: list[int]) -> Decimal:
        """The energy since the start at cut ``at_us`` (in reading interval ``i``, or at
        reading ``i``): µWh fixed point, so the pieces add up to the register's rise."""
        if at_us in self.exact_wh:
            return self.exact_wh[at_us]
        base = registers[0]
        if at_reading:
            return Decimal(registers[i] - base)
        begin, end = self.offset(i), self.offset(i + 1)
        fraction = Decimal((registers[i + 1] - registers[i]) * (at_us - begin)) / (end - begin)
        return (registers[i] - base + fraction).quantize(_UWH)


def pieces(compiled: CompiledTariff, usage: SessionUsage) -> list[Piece]:
    """The session cut wherever an element may switch: where charging turns to parking
    (or back) or power or current crosses a restriction's limit (at a reading), at the
    tariff's time cuts, and where the energy crosses a kWh limit (interpolated). Between
    cuts nothing a restriction reads changes, so each piece is priced by one element per
    dimension; readings that change nothing do not cut (a session of 60 readings is
    usually a handful of pieces)."""
    readings = usage.readings
    registers = [r.energy_wh for r in readings]
    # Per reading interval: the register stands still and no power flows.
    parking = [
        after == before and not r.power_w
        for before, after, r in zip(registers, registers[1:], readings, strict=False)
    ]  # (readings has one more: the last begins no interval)
    cuts = _Cuts(usage)
    for i in (*_reading_bounds(compiled, readings, parking), len(readings) - 1):
        cuts.add_reading(i)
    instants = _global_cuts(compiled, usage)
    if instants:
        cuts.add_instants(instants)
    if compiled.kwh_cuts:
        cuts.add_kwh_crossings(compiled, registers)
    found: list[Piece] = []
    last = len(readings) - 2
    e_a = _ZERO
    ordered = sorted(cuts.at.items())
    for (a_us, (i, _)), (b_us, (m, b_at_reading)) in itertools.pairwise(ordered):
        j = min(i, last)  # the interval holding a
        e_b = cuts.energy_at(b_us, m, b_at_reading, registers)
        found.append(Piece(a_us, b_us, e_a, e_b, parking[j], j))
        e_a = e_b
    return found


def moment(piece: Piece, usage: SessionUsage, needs_local: bool) -> Moment:
    """What the restrictions read at the start of ``piece`` (the local time only when a
    restriction of the tariff reads it)."""
    at = usage.start + timedelta(microseconds=piece.start_us)
    here = usage.readings[piece.reading]
    return Moment(
        local=wall(at, usage.time_zone) if needs_local else at,
        energy_wh=piece.energy_before_wh,
        power_kw=here.power_w / _WH_PER_KWH,
        current_a=here.current_a,
        duration_s=Decimal(piece.start_us) / 1_000_000,
    )


_MAX_CACHED_CLASSES = 4096


def _choice(compiled: CompiledTariff, usage: SessionUsage, piece: Piece) -> Choice:
    """The elements pricing ``piece``: found once per class of moments the restrictions
    cannot tell apart (a tariff has a few: its windows, days, limits), then looked up."""
    here = usage.readings[piece.reading]
    local = None
    if compiled.needs_local:  # aware, in the zone: its time, weekday and date are the wall's
        local = (usage.start + timedelta(microseconds=piece.start_us)).astimezone(usage.time_zone)
    key = compiled.classes.key(
        piece.parking, local, piece.energy_before_wh, here.power_w, here.current_a, piece.start_us
    )
    choice = compiled.choices.get(key)
    if choice is None:
        if len(compiled.choices) >= _MAX_CACHED_CLASSES:
            compiled.choices.clear()
        choice = compiled.choice(piece.parking, moment(piece, usage, compiled.needs_local))
        compiled.choices[key] = choice
    return choice


def periods(compiled: CompiledTariff, usage: SessionUsage, cut: list[Piece]) -> list[Period]:
    """Each piece priced (per dimension, the first element whose restrictions hold at its
    start) and adjacent pieces priced alike joined into charging periods."""
    found: list[Period] = []
    fixed = compiled.fixed_choice
    last_key: tuple[bool, Choice] | None = None
    for piece in cut:
        # A fixed choice: no restriction can change it.
        choice = fixed[piece.parking] if fixed is not None else _choice(compiled, usage, piece)
        # One candidate per dimension and element: the same elements, the same objects.
        key = (piece.parking, choice)
        if key == last_key:
            found[-1].last = piece
        else:
            found.append(Period(piece, piece, choice))
            last_key = key
    return found
