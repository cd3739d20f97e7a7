"""Who is served first: priority classes, and the order in which equals take turns.

A class is (membership tier, laxity step, state-of-charge step). Laxity is the slack a
session has: time to its declared departure minus the time it needs at its maximum power
(ACN's least-laxity-first). Laxity and SoC are grouped in steps (1 h and 20 % by default)
so that two sessions a minute apart in laxity share a class and the power fairly, and a
session does not jump ahead of another and back every round as it charges.

>>> from datetime import UTC, datetime, timedelta
>>> from smart_charging.inputs import NOMINAL_VOLTAGE_V, SessionDemand
>>> now = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> urgent = SessionDemand("CP1", 1, now, max_a=16, departure=now + timedelta(hours=2),
...     energy_needed_wh=11_040)  # 16 A x 3 x 230 V = 11.04 kW: one hour at full power
>>> laxity(urgent, now, 230.0)
datetime.timedelta(seconds=3600)
>>> policy = Policy()
>>> member = SessionDemand("CP2", 1, now, tier=1)
>>> walk_in = SessionDemand("CP3", 1, now)
>>> sorted([walk_in, urgent, member], key=lambda s: class_of(s, now, 230.0, policy))[0].station_id
'CP2'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from smart_charging.inputs import NOMINAL_VOLTAGE_V, SessionDemand

# Membership tiers by name (``id_tags.membership_tier``, the registry API) and the
# ``SessionDemand.tier`` each ranks as: a higher tier is served first.
MEMBERSHIP_TIERS = {"standard": 0, "member": 1, "fleet": 2, "priority": 3}

# A session without a departure or an energy need ranks after every session with both.
NO_LAXITY = math.inf


@dataclass(frozen=True, slots=True)
class Policy:
    """How sessions are ranked and how long a turn lasts when not everyone can charge.

    ``rotation_period``: a session that got power keeps it this long before an equal that
    waits longer may take its place (a pause costs a car more than a few amperes).
    ``unknown_soc_percent``: where a session that reports no SoC ranks (most AC cars).
    ``margin_a``: per phase, left unallocated and required free before a paused session
    resumes, so that a small rise of the site's other load changes nothing (no flapping).
    """

    laxity_step: timedelta = timedelta(hours=1)
    soc_step_percent: float = 20.0
    unknown_soc_percent: float = 50.0
    rotation_period: timedelta = timedelta(minutes=15)
    margin_a: float = 0.5


ClassKey = tuple[int, float, float]


def laxity(session: SessionDemand, now: datetime, voltage_v: float) -> timedelta | None:
    """Time to departure minus the time needed at max power, or None when not declared."""
    seconds = _laxity_s(session, now, voltage_v)
    return None if seconds is None else timedelta(seconds=seconds)


def _laxity_s(session: SessionDemand, now: datetime, voltage_v: float) -> float | None:
    if session.departure is None or session.energy_needed_wh is None:
        return None
    max_power_w = session.max_a * session.phases * voltage_v
    if max_power_w <= 0:
        return None
    needed_s = max(session.energy_needed_wh, 0.0) / max_power_w * 3600
    return (session.departure - now).total_seconds() - needed_s


RankKey = tuple[int, float, float, int, datetime]


def class_of(session: SessionDemand, now: datetime, voltage_v: float, policy: Policy) -> ClassKey:
    """The class key, lowest first: (-tier, laxity step, SoC step)."""
    tier, lax, soc = rank_keys((session,), now, voltage_v, policy)[0][:3]
    return (tier, lax, soc)


def turn_key(session: SessionDemand, now: datetime, policy: Policy) -> tuple[int, datetime]:
    """Order among equals: sessions within their turn first, then who waited longest.

    A session powered for less than the rotation period keeps its place (0, since). The
    others (1, since when they wait): a paused session since its pause (or its start if
    never powered), a session whose turn is over since its turn ended.
    """
    _, _, _, within, since = rank_keys((session,), now, NOMINAL_VOLTAGE_V, policy)[0]
    return (within, since)


def rank_keys(
    sessions: Sequence[SessionDemand], now: datetime, voltage_v: float, policy: Policy
) -> list[RankKey]:
    """Per session its class (:func:`class_of`) then its turn (:func:`turn_key`), flat.

    One loop for a whole site, the allocator's hot path: the policy's values are read once.
    """
    step_s = policy.laxity_step.total_seconds()
    soc_step = policy.soc_step_percent
    unknown_soc = policy.unknown_soc_percent
    rotation = policy.rotation_period
    floor = math.floor
    keys: list[RankKey] = []
    for s in sessions:
        lax = NO_LAXITY
        if s.departure is not None:
            slack_s = _laxity_s(s, now, voltage_v)
            if slack_s is not None:
                lax = floor(slack_s / step_s)
        soc = unknown_soc if s.soc_percent is None else s.soc_percent
        turn = s.turn
        if turn.powered_since is not None and turn.paused_since is None:
            turn_end = turn.powered_since + rotation
            within, since = (0, turn.powered_since) if now < turn_end else (1, turn_end)
        else:
            within, since = 1, turn.paused_since or s.started_at
        keys.append((-s.tier, lax, floor(soc / soc_step), within, since))
    return keys
