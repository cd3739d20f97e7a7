"""What the allocator's tests share: hypothesis strategies for sites and sessions, the
per-phase totals of an allocation, and a driver that runs rounds as the flow will."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from smart_charging.allocator import Allocation, allocate, next_turns
from smart_charging.inputs import Phase, SessionDemand, Site, SiteLimit
from smart_charging.priority import Policy

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
STEP_A = 0.1
EPS = 1e-6


def tenths(low: int, high: int) -> st.SearchStrategy[float]:
    """Amperes in 0.1 A steps from ``low`` to ``high`` tenths."""
    return st.integers(low, high).map(lambda n: n / 10)


@st.composite
def demands(draw: st.DrawFn, index: int, fixed: bool = True) -> SessionDemand:
    min_a = draw(st.sampled_from([6.0, 6.0, 6.0, 8.0, 10.0]))
    has_departure = draw(st.booleans())
    flags = draw(st.sampled_from(["ok"] * 8 + ["rejects", "offline", "ignores"])) if fixed else "ok"
    started = NOW - timedelta(minutes=draw(st.integers(0, 600)))
    return SessionDemand(
        station_id=f"CP{index:04d}",
        connector_id=1,
        started_at=started,
        phases=draw(st.sampled_from([1, 3])),
        phase=draw(st.sampled_from(list(Phase))),
        rotation=draw(st.sampled_from(["RST", "STR", "TRS", "Unknown"])),
        min_a=min_a,
        max_a=draw(tenths(int(min_a * 10), 320)),
        measured_a=draw(st.none() | tenths(0, 400)),
        controllable=flags != "rejects",
        online=flags != "offline",
        compliant=flags != "ignores",
        tier=draw(st.integers(0, 2)),
        departure=NOW + timedelta(minutes=draw(st.integers(-30, 600))) if has_departure else None,
        energy_needed_wh=draw(st.floats(0, 60_000)) if has_departure else None,
        soc_percent=draw(st.none() | st.floats(0, 100)),
    )


@st.composite
def sessions(draw: st.DrawFn, max_size: int = 40, fixed: bool = True) -> list[SessionDemand]:
    count = draw(st.integers(0, max_size))
    return [draw(demands(i, fixed)) for i in range(count)]


def sites() -> st.SearchStrategy[Site]:
    limits = st.tuples(tenths(0, 2500), tenths(0, 2500), tenths(0, 2500))
    return limits.map(lambda a: Site("S1", SiteLimit(a)))


def base_loads() -> st.SearchStrategy[tuple[float, float, float]]:
    return st.tuples(tenths(0, 600), tenths(0, 600), tenths(0, 600))


def controlled_totals(allocation: Allocation) -> list[float]:
    totals = [0.0, 0.0, 0.0]
    for s in allocation.sessions:
        if s.controlled:
            for p in s.site_phases:
                totals[p] += s.current_a
    return totals


def settle(
    site: Site,
    base: tuple[float, float, float],
    demanded: Sequence[SessionDemand],
    at: datetime,
    policy: Policy = Policy(),
) -> tuple[list[SessionDemand], Allocation]:
    """One round, then the sessions with the turns it gave them (what the next round sees)."""
    allocation = allocate(site, base, demanded, at, policy)
    turns = next_turns(demanded, allocation)
    return [replace(d, turn=turns.get(d.key, d.turn)) for d in demanded], allocation
