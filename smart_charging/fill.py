"""Max-min fair shares on three phases (water-filling), in whole deciamperes.

Each member draws the same current on every phase it uses and is given
``clamp(level, low, high)``: one common level rises for all until a phase is full; the
members on that phase stay where they are and the level rises on for the others, until
every member is at its ``high`` or on a full phase. There are three phases, so the level
stops at most three times; each stop is one sweep over sorted breakpoints: O(n log n).

Integers (0.1 A, the resolution of an OCPP limit) keep sums exact; the level itself is a
Fraction. Where rounding the level down leaves a phase a few deciamperes, they go one
each to the members frozen there, in their given (priority) order.

>>> room = [100, 100, 100]  # 10 A free on each phase, above the members' lows
>>> one_phase = Member(60, 320, (0,))
>>> three_phase = Member(60, 320, (0, 1, 2))
>>> water_fill([one_phase, three_phase], room), room
([110, 110], [0, 50, 50])
>>> water_fill([Member(60, 160, (1,)), Member(60, 320, (1,))], [300, 300, 300])
[160, 260]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple, Protocol

PHASES = (0, 1, 2)


class Bounded(Protocol):
    """What the fill reads of a member (the allocator passes its own prepared entries)."""

    @property
    def low(self) -> int: ...
    @property
    def high(self) -> int: ...
    @property
    def phases(self) -> tuple[int, ...]: ...


class Member(NamedTuple):
    """A session in the fill: its current is between ``low`` and ``high`` (deciamperes)."""

    low: int
    high: int
    phases: tuple[int, ...]


def saturation_level(members: Sequence[Bounded], room: int) -> Fraction | None:
    """The highest level at which the members' extras above their lows fit in ``room``.

    None when all of them reach their highs within it.
    """
    if sum(m.high - m.low for m in members) <= room:
        return None
    events = sorted([(m.low, 1) for m in members] + [(m.high, -1) for m in members])
    extra, slope, position = 0, 0, events[0][0]
    for at, change in events:
        gain = slope * (at - position)
        if slope > 0 and extra + gain >= room:
            return position + Fraction(room - extra, slope)
        extra += gain
        position = at
        slope += change
    raise AssertionError("unreachable: the members' total extra exceeds the room")


def water_fill(members: Sequence[Bounded], room: list[int]) -> list[int]:
    """Currents (deciamperes) for ``members``; ``room`` (free per phase above the lows) is
    reduced by what they take. The lows are assumed to be reserved already."""
    if len(members) == 1:  # most classes, when laxity and SoC tell sessions apart
        member = members[0]
        current = min(member.high, member.low + min(room[p] for p in member.phases))
        for p in member.phases:
            room[p] -= current - member.low
        return [current]
    value = [m.low for m in members]
    if not any(room[p] for m in members for p in m.phases):
        return value  # a better class took it all: everyone at the minimum
    unfrozen = list(range(len(members)))
    while unfrozen:
        levels = _levels(members, unfrozen, room)
        finite = [level for level in levels.values() if level is not None]
        if not finite:
            for i in unfrozen:
                _take(members[i], members[i].high, value, i, room)
            break
        level = min(finite)
        full = {p for p, at in levels.items() if at == level}
        freezing = [i for i in unfrozen if full.intersection(members[i].phases)]
        unfrozen = [i for i in unfrozen if not full.intersection(members[i].phases)]
        floor_level = math.floor(level)
        for i in freezing:
            _take(members[i], _clamp(floor_level, members[i]), value, i, room)
        _share_remainder(members, freezing, unfrozen, floor_level, value, room)
    return value


def _levels(
    members: Sequence[Bounded], unfrozen: list[int], room: list[int]
) -> dict[int, Fraction | None]:
    on_phase: dict[int, list[Bounded]] = {p: [] for p in PHASES}
    for i in unfrozen:
        for p in members[i].phases:
            on_phase[p].append(members[i])
    return {p: saturation_level(on, room[p]) for p, on in on_phase.items() if on}


def _clamp(level: int, member: Bounded) -> int:
    return max(member.low, min(level, member.high))


def _take(member: Bounded, current: int, value: list[int], i: int, room: list[int]) -> None:
    for p in member.phases:
        room[p] -= current - value[i]
    value[i] = current


def _share_remainder(
    members: Sequence[Bounded],
    freezing: list[int],
    unfrozen: list[int],
    level: int,
    value: list[int],
    room: list[int],
) -> None:
    """One more deciampere each to frozen members below their high, in order, where every
    phase they use keeps room for what the still rising members will take at ``level``."""
    pending = [0, 0, 0]
    for i in unfrozen:
        for p in members[i].phases:
            pending[p] += _clamp(level, members[i]) - members[i].low
    for i in freezing:
        member = members[i]
        if value[i] != level or value[i] >= member.high:  # held above by its low, or full
            continue
        if all(room[p] - pending[p] >= 1 for p in member.phases):
            _take(member, value[i] + 1, value, i, room)
