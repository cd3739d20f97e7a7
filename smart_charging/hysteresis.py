"""Which of an allocation's limits are worth sending to the stations now.

Stations keep profiles in flash, and a profile every few seconds wears it out
(EVerest/libocpp#543), so a limit is sent only when it matters:

- a session's first limit, and a pause (to 0), always;
- a change of at least ``threshold_a``, or a resume (from 0, or from below the session's
  minimum, where the EV does not charge), when the station's last update is at least
  ``min_interval`` ago (telemetry time); a station that gets an update anyway gets all
  its changes worth sending in the same round;
- a smaller decrease, or one held by the rate limit, whenever the limits the stations
  keep would otherwise exceed the site's limit on a phase (largest decreases first):
  safety before flash wear. Increases never need that: holding one back is safe.

Reductions come first in the result (they land before the increases that need them).

>>> from datetime import UTC, datetime, timedelta
>>> from smart_charging.allocator import allocate
>>> from smart_charging.inputs import SessionDemand, Site, SiteLimit
>>> now = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> site = Site("S1", SiteLimit((40.0, 40.0, 40.0)))
>>> cars = [SessionDemand(f"CP{n}", 1, now) for n in (1, 2, 3)]
>>> first = allocate(site, (10.0, 5.0, 5.0), cars, now)
>>> [(u.station_id, u.current_a, u.why) for u in updates_to_send(first, {}, {}, now)]
[('CP1', 9.9, 'new'), ('CP2', 9.8, 'new'), ('CP3', 9.8, 'new')]
>>> later = now + timedelta(minutes=1)
>>> noisy = allocate(site, (10.3, 5.0, 5.0), cars, later)  # the other load rose by 0.3 A
>>> updates_to_send(noisy, first.limits(), {"CP1": now, "CP2": now, "CP3": now}, later)
()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from smart_charging.allocator import DECI, Allocation, SessionLimit

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    """``threshold_a``: the smallest change worth a profile. ``min_interval``: the least
    time between two updates of one station (OCPP 2.1 ``ChargingProfileUpdateRateLimit``)."""

    threshold_a: float = 1.0
    min_interval: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Update:
    """A limit to send: ``previous_a`` is what the station has (None: nothing yet)."""

    station_id: str
    connector_id: int
    current_a: float
    previous_a: float | None
    why: str  # new, pause, resume, change, site limit


def updates_to_send(
    allocation: Allocation,
    sent: Mapping[Key, float],
    last_update_at: Mapping[str, datetime],
    now: datetime,
    policy: UpdatePolicy = UpdatePolicy(),
) -> tuple[Update, ...]:
    """The limits of ``allocation`` to send now, given the limits the stations have
    (``sent``) and when each station was last updated."""
    controlled = [s for s in allocation.sessions if s.controlled]
    chosen: dict[Key, Update] = {}
    for session in controlled:
        why = _must_send(session, sent.get(session.key))
        if why:
            chosen[session.key] = _update(session, sent, why)
    updated = {key[0] for key in chosen}
    for session in controlled:
        if session.key in chosen:
            continue
        why = _worth_sending(session, sent[session.key], policy)
        due = session.station_id in updated or _due(session.station_id, last_update_at, now, policy)
        if why and due:
            chosen[session.key] = _update(session, sent, why)
    for session in _reductions_for_the_limit(allocation, controlled, sent, chosen):
        chosen[session.key] = _update(session, sent, "site limit")
    return tuple(sorted(chosen.values(), key=_sending_order))


def held_until(
    allocation: Allocation,
    sent: Mapping[Key, float],
    last_update_at: Mapping[str, datetime],
    policy: UpdatePolicy = UpdatePolicy(),
) -> datetime | None:
    """When the first change worth sending that a station's rate limit holds back may go
    (None: nothing held): the caller recomputes then, so that capacity freed elsewhere
    reaches the others as soon as their stations may take a profile."""
    times = []
    for session in allocation.sessions:
        previous, last = sent.get(session.key), last_update_at.get(session.station_id)
        if not session.controlled or previous is None or last is None:
            continue
        if _worth_sending(session, previous, policy):
            times.append(last + policy.min_interval)
    return min(times, default=None)


def _must_send(session: SessionLimit, previous: float | None) -> str | None:
    if previous is None:
        return "new"
    if previous > 0 and session.current_a == 0:
        return "pause"
    return None


def _worth_sending(session: SessionLimit, previous: float, policy: UpdatePolicy) -> str | None:
    if previous < session.min_a <= session.current_a:
        return "resume"
    if abs(session.current_a - previous) >= policy.threshold_a - 1e-9:
        return "change"
    return None


def _due(
    station_id: str, last_update_at: Mapping[str, datetime], now: datetime, policy: UpdatePolicy
) -> bool:
    last = last_update_at.get(station_id)
    return last is None or now - last >= policy.min_interval


def _reductions_for_the_limit(
    allocation: Allocation,
    controlled: list[SessionLimit],
    sent: Mapping[Key, float],
    chosen: Mapping[Key, Update],
) -> list[SessionLimit]:
    """The held decreases to send so that what the stations keep fits every phase."""

    def kept(session: SessionLimit) -> float:
        if session.key in chosen:
            return session.current_a
        return sent.get(session.key, session.current_a)

    over = []
    for p in range(3):
        load = allocation.base_load_a[p] + allocation.fixed_load_a[p]
        load += sum(kept(s) for s in controlled if p in s.site_phases)
        over.append(round((load - allocation.limit_a[p]) * DECI))
    held = [s for s in controlled if s.key not in chosen and kept(s) > s.current_a]
    held.sort(key=lambda s: (s.current_a - kept(s), s.key))  # the largest decrease first
    out = []
    for session in held:
        if not any(over[p] > 0 for p in session.site_phases):
            continue
        cut = round((kept(session) - session.current_a) * DECI)
        for p in session.site_phases:
            over[p] -= cut
        out.append(session)
    return out


def _update(session: SessionLimit, sent: Mapping[Key, float], why: str) -> Update:
    return Update(
        session.station_id, session.connector_id, session.current_a, sent.get(session.key), why
    )


def _sending_order(update: Update) -> tuple[bool, str, int]:
    increase = update.previous_a is None or update.current_a > update.previous_a
    return (increase, update.station_id, update.connector_id)
