"""The site allocator: the current limit of every active session, pure and deterministic.

Rules, in order:

1. Budget first what chargeflow cannot steer: the site's other load (its meter, per
   phase) and every session that is not controllable, offline or non-compliant, at the
   higher of its maximum and its measured draw. What is left per phase is shared.
2. Admit sessions at their minimum (IEC 61851: 6 A) in priority order (class, then
   turn), skipping a session whose minimum does not fit on its phases: it is paused (0).
   A running session keeps its place while its minimum fits; a paused one resumes only if
   it fits with ``Policy.margin_a`` to spare, so load noise does not pause and resume it
   (a running session of a lower class than one waiting for the margin needs it too).
3. Share the rest class by class, best first; within a class max-min fair (water-filling)
   up to each maximum. A single-phase session loads its phase, a three-phase one all three.

>>> from datetime import UTC, datetime
>>> from smart_charging.inputs import SessionDemand, Site, SiteLimit
>>> now = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> site = Site("S1", SiteLimit((40.0, 40.0, 40.0)))
>>> cars = [SessionDemand(f"CP{n}", 1, now, max_a=32) for n in range(1, 4)]
>>> allocation = allocate(site, (10.0, 5.0, 5.0), cars, now)
>>> [(s.station_id, s.current_a, s.reason.value) for s in allocation.sessions]
[('CP1', 9.9, 'fair share'), ('CP2', 9.8, 'fair share'), ('CP3', 9.8, 'fair share')]
>>> allocation.headroom_a  # L1 is full but for the margin; L2 and L3 have more
(0.5, 5.5, 5.5)

Five cars on the same 30 A that L1 has free: four minimums fit, the fifth waits its turn.

>>> five = [SessionDemand(f"CP{n}", 1, now) for n in range(1, 6)]
>>> [(s.current_a, s.reason.value) for s in allocate(site, (10.0, 5.0, 5.0), five, now).sessions]
[(7.4, 'fair share'), (7.4, 'fair share'), (7.4, 'fair share'), (7.3, 'fair share'),
 (0.0, 'paused: minimum cannot be met, rotating')]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from operator import attrgetter
from typing import NamedTuple

import msgspec

from smart_charging.fill import PHASES, water_fill
from smart_charging.inputs import Phase, PhaseCurrents, SessionDemand, Site, Turn, site_phase
from smart_charging.priority import ClassKey, Policy, rank_keys

DECI = 10  # the allocator counts in 0.1 A, the resolution of an OCPP limit
_NOBODY: ClassKey = (sys.maxsize, math.inf, math.inf)  # below every class


class Reason(StrEnum):
    MAX = "max current"
    FAIR_SHARE = "fair share"
    PRIORITY = "minimum: higher priority first"
    PAUSED_ROTATING = "paused: minimum cannot be met, rotating"
    PAUSED_PRIORITY = "paused: minimum cannot be met, higher priority first"
    PAUSED_NO_CAPACITY = "paused: no capacity on its phases"
    FIXED_UNCONTROLLABLE = "budgeted at full draw: rejects profiles"
    FIXED_OFFLINE = "budgeted at full draw: offline"
    FIXED_NON_COMPLIANT = "budgeted at full draw: non-compliant"


class SessionLimit(msgspec.Struct, frozen=True):
    """A session's limit per phase (A; 0 = paused), or the draw budgeted for it when not
    ``controlled`` (then no profile is worth sending). ``min_a`` is the session's minimum
    (a profile's ``minChargingRate``; below it the EV does not charge)."""

    station_id: str
    connector_id: int
    current_a: float
    site_phases: tuple[int, ...]  # 0 = L1 .. 2 = L3
    reason: Reason
    controlled: bool
    min_a: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.station_id, self.connector_id)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The site at one instant: per phase the limit, the other load, the fixed budget and
    what was allocated (A); the headroom is negative when fixed loads alone exceed it."""

    site_id: str
    at: datetime
    limit_a: PhaseCurrents
    base_load_a: PhaseCurrents
    fixed_load_a: PhaseCurrents
    allocated_a: PhaseCurrents
    headroom_a: PhaseCurrents
    sessions: tuple[SessionLimit, ...]  # sorted by (station, connector)

    def limits(self) -> dict[tuple[str, int], float]:
        return {s.key: s.current_a for s in self.sessions if s.controlled}


class _Entry(NamedTuple):
    """A controlled session, prepared once: its bounds (deciamperes) and site phases (a
    member of the fill), its rank, and whether it runs now."""

    low: int
    high: int
    phases: tuple[int, ...]
    demand: SessionDemand
    rank: ClassKey
    running: bool


def allocate(
    site: Site,
    base_load_a: PhaseCurrents,
    sessions: Iterable[SessionDemand],
    now: datetime,
    policy: Policy = Policy(),
) -> Allocation:
    """Every session's limit at telemetry instant ``now``; see the module's rules."""
    limit = [_down(a) for a in site.limit.per_phase_a]
    base = [_up(max(a, 0.0)) for a in base_load_a]  # an exporting meter frees nothing
    controlled: list[SessionDemand] = []
    uncontrolled: list[SessionDemand] = []
    for d in sessions:
        (uncontrolled if d.fixed else controlled).append(d)
    fixed, fixed_limits = _budget_fixed(uncontrolled)
    free = [limit[p] - base[p] - fixed[p] for p in PHASES]
    ranked = _rank(controlled, now, site.voltage_v, policy)
    margin = _up(policy.margin_a)
    admitted = _admit(ranked, free, margin)
    currents = _share(ranked, admitted, free, margin)
    limits = [*fixed_limits, *_controlled_limits(ranked, admitted, currents, free)]
    allocated = [0, 0, 0]
    for entry, current in zip(ranked, currents, strict=True):
        for p in entry.phases:
            allocated[p] += current
    return Allocation(
        site_id=site.site_id,
        at=now,
        limit_a=_amps(limit),
        base_load_a=_amps(base),
        fixed_load_a=_amps(fixed),
        allocated_a=_amps(allocated),
        headroom_a=_amps([free[p] - allocated[p] for p in PHASES]),
        sessions=tuple(sorted(limits, key=_BY_CONNECTOR)),
    )


def _rank(
    demands: Sequence[SessionDemand], now: datetime, voltage_v: float, policy: Policy
) -> list[_Entry]:
    """The controlled sessions in priority order: class, turn, then (station, connector)."""
    ranks = rank_keys(demands, now, voltage_v, policy)
    keys = [
        (*rank, d.station_id, d.connector_id, i)
        for i, (rank, d) in enumerate(zip(ranks, demands, strict=True))
    ]
    keys.sort()  # flat tuples: four times faster to sort than nested ones
    ranked = []
    new = tuple.__new__  # _Entry's own constructor costs twice as much in this hot loop
    for key in keys:
        d = demands[key[-1]]
        high = max(_down(d.max_a), 0)
        low = min(_up(d.min_a), high)
        turn = d.turn
        running = turn.powered_since is not None and turn.paused_since is None
        phases = _ALL_PHASES if d.phases == 3 else _phases(d)
        ranked.append(new(_Entry, (low, high, phases, d, key[:3], running)))
    return ranked


def next_turns(
    sessions: Iterable[SessionDemand], allocation: Allocation
) -> dict[tuple[str, int], Turn]:
    """Each controlled session's turn after ``allocation``: what the next round is given.

    >>> from datetime import UTC, datetime
    >>> from smart_charging.inputs import SessionDemand, Site, SiteLimit
    >>> now = datetime(2026, 7, 1, 12, tzinfo=UTC)
    >>> cars = [SessionDemand(f"CP{n}", 1, now) for n in (1, 2)]
    >>> turns = next_turns(cars, allocate(Site("S", SiteLimit((10.0, 10.0, 10.0))), (0, 0, 0),
    ...     cars, now))
    >>> turns[("CP1", 1)].powered_since == now, turns[("CP2", 1)].paused_since == now
    (True, True)
    """
    limits = allocation.limits()
    turns: dict[tuple[str, int], Turn] = {}
    for session in sessions:
        if session.key not in limits:
            continue
        turn = session.turn
        if limits[session.key] > 0:
            running = turn.powered_since is not None and turn.paused_since is None
            turns[session.key] = turn if running else Turn(powered_since=allocation.at)
        elif turn.paused_since is None:  # paused now, or waiting since it plugged in
            since = session.started_at if turn.powered_since is None else allocation.at
            turns[session.key] = Turn(turn.powered_since, since)
        else:
            turns[session.key] = turn
    return turns


def _admit(ranked: Sequence[_Entry], free: list[int], margin: int) -> list[bool]:
    """Greedy in priority order: a session runs if its minimum fits on all its phases.

    A running session needs no margin, unless a better class waits on one of its phases
    for the margin alone: then it needs the margin too, so that it yields to that one.
    """
    reserved = [0, 0, 0]
    waiting = [_NOBODY, _NOBODY, _NOBODY]  # per phase, the best class held by the margin
    admitted = []
    for entry in ranked:
        low, phases, rank = entry.low, entry.phases, entry.rank
        spare = margin
        if entry.running and min([waiting[p] for p in phases]) >= rank:
            spare = 0
        room = min([free[p] - reserved[p] for p in phases])
        fits = low <= room - spare
        if fits:
            for p in phases:
                reserved[p] += low
        elif low <= room:
            for p in phases:
                waiting[p] = min(rank, waiting[p])
        admitted.append(fits)
    return admitted


def _share(
    ranked: Sequence[_Entry], admitted: Sequence[bool], free: list[int], margin: int
) -> list[int]:
    """Minimums to every admitted session, then the rest class by class (water-filling)."""
    currents = [0] * len(ranked)
    room = list(free)
    wanted = [0, 0, 0]
    for i, entry in enumerate(ranked):
        if admitted[i]:
            low, extra = entry.low, entry.high - entry.low
            currents[i] = low
            for p in entry.phases:
                room[p] -= low
                wanted[p] += extra
    room = [max(0, r - margin) for r in room]
    if all(wanted[p] <= room[p] for p in PHASES):  # enough for everyone's maximum
        return [entry.high if admitted[i] else 0 for i, entry in enumerate(ranked)]
    members: list[int] = []  # the admitted sessions of the class being gathered
    rank = ranked[0].rank
    for i, entry in enumerate(ranked):
        if entry.rank != rank:
            _fill_class(ranked, members, room, currents)
            members, rank = [], entry.rank
        if admitted[i]:
            members.append(i)
    _fill_class(ranked, members, room, currents)
    return currents


def _fill_class(
    ranked: Sequence[_Entry], members: list[int], room: list[int], currents: list[int]
) -> None:
    if members:
        shares = water_fill([ranked[i] for i in members], room)
        for i, share in zip(members, shares, strict=True):
            currents[i] = share


def _controlled_limits(
    ranked: Sequence[_Entry],
    admitted: Sequence[bool],
    currents: Sequence[int],
    free: Sequence[int],
) -> list[SessionLimit]:
    running_classes = {ranked[i].rank for i in range(len(ranked)) if admitted[i]}
    boosted = _boosted_phases(ranked, admitted, currents)
    out = []
    for i, entry in enumerate(ranked):
        if not admitted[i]:
            if any(entry.low > free[p] for p in entry.phases):
                reason = Reason.PAUSED_NO_CAPACITY
            elif entry.rank in running_classes:
                reason = Reason.PAUSED_ROTATING
            else:
                reason = Reason.PAUSED_PRIORITY
        elif currents[i] >= entry.high:
            reason = Reason.MAX
        elif currents[i] == entry.low and boosted[i].intersection(entry.phases):
            reason = Reason.PRIORITY
        else:
            reason = Reason.FAIR_SHARE
        d = entry.demand
        out.append(
            SessionLimit(
                d.station_id,
                d.connector_id,
                currents[i] / DECI,
                entry.phases,
                reason,
                controlled=True,
                min_a=d.min_a,
            )
        )
    return out


def _boosted_phases(
    ranked: Sequence[_Entry], admitted: Sequence[bool], currents: Sequence[int]
) -> list[frozenset[int]]:
    """Per session, the phases where a better class got more than its minimum."""
    better: frozenset[int] = frozenset()
    this_class: set[int] = set()
    out = []
    for i, entry in enumerate(ranked):
        if i > 0 and entry.rank != ranked[i - 1].rank:
            better = better | this_class
            this_class = set()
        out.append(better)
        if admitted[i] and currents[i] > entry.low:
            this_class.update(entry.phases)
    return out


def _budget_fixed(demands: Iterable[SessionDemand]) -> tuple[list[int], list[SessionLimit]]:
    load = [0, 0, 0]
    limits = []
    for demand in demands:
        draw = _up(max(demand.max_a, demand.measured_a or 0.0))
        for p in _phases(demand):
            load[p] += draw
        if not demand.online:
            reason = Reason.FIXED_OFFLINE
        elif not demand.compliant:
            reason = Reason.FIXED_NON_COMPLIANT
        else:
            reason = Reason.FIXED_UNCONTROLLABLE
        limits.append(_limit(demand, draw, reason, controlled=False))
    return load, limits


def _limit(demand: SessionDemand, deciamps: int, reason: Reason, controlled: bool) -> SessionLimit:
    return SessionLimit(
        demand.station_id,
        demand.connector_id,
        deciamps / DECI,
        _phases(demand),
        reason,
        controlled,
        demand.min_a,
    )


_ALL_PHASES = (0, 1, 2)
_BY_CONNECTOR = attrgetter("station_id", "connector_id")  # SessionLimit.key, unwrapped


def _phases(demand: SessionDemand) -> tuple[int, ...]:
    if demand.phases == 1:
        return _single_phase(demand.phase, demand.rotation)
    return _ALL_PHASES


@cache
def _single_phase(phase: Phase, rotation: str) -> tuple[int, ...]:
    return (site_phase(phase, rotation).index,)


def _down(amps: float) -> int:
    return math.floor(amps * DECI + 1e-9)


def _up(amps: float) -> int:
    return math.ceil(amps * DECI - 1e-9)


def _amps(deciamps: Sequence[int]) -> PhaseCurrents:
    return (deciamps[0] / DECI, deciamps[1] / DECI, deciamps[2] / DECI)
