"""Properties of the site allocator (smart_charging), on random sites and sessions: the site
limit per phase, minimums, priority order, max-min fairness within a class, stability
under load noise, rotation without starvation, determinism, and that what the stations
keep after the hysteresis still fits the site."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from smart_charging.allocator import Allocation, allocate
from smart_charging.hysteresis import updates_to_send
from smart_charging.inputs import SessionDemand, Site, SiteLimit
from smart_charging.priority import Policy, class_of
from tests.support.allocation import (
    EPS,
    NOW,
    STEP_A,
    base_loads,
    controlled_totals,
    sessions,
    settle,
    sites,
    tenths,
)

POLICY = Policy()


def _free(allocation: Allocation) -> list[float]:
    return [
        allocation.limit_a[p] - allocation.base_load_a[p] - allocation.fixed_load_a[p]
        for p in range(3)
    ]


def _need(d: SessionDemand) -> tuple[float, float, tuple[int, ...]]:
    return (d.min_a, d.max_a, tuple(p.index for p in d.site_phases))


@settings(deadline=None)
@given(sites(), base_loads(), sessions())
def test_no_phase_is_over_the_site_limit(site: Site, base, demanded) -> None:
    allocation = allocate(site, base, demanded, NOW)
    used_per_phase = controlled_totals(allocation)
    for p, (free, used) in enumerate(zip(_free(allocation), used_per_phase, strict=True)):
        assert used <= max(free, 0.0) + EPS, (p, free, used)
        if free >= 0:
            total = allocation.base_load_a[p] + allocation.fixed_load_a[p] + used
            assert total <= site.limit.per_phase_a[p] + EPS
    for d in demanded:
        if d.fixed:  # budgeted, never less than it may draw
            assert (
                allocation.sessions[_index(allocation, d)].current_a
                >= max(d.max_a, d.measured_a or 0) - EPS
            )


def _index(allocation: Allocation, d: SessionDemand) -> int:
    return [s.key for s in allocation.sessions].index(d.key)


@settings(deadline=None)
@given(sites(), base_loads(), sessions())
def test_a_limit_is_zero_or_between_min_and_max(site: Site, base, demanded) -> None:
    allocation = allocate(site, base, demanded, NOW)
    by_key = {d.key: d for d in demanded}
    for limit in allocation.sessions:
        d = by_key[limit.key]
        if limit.controlled and limit.current_a > 0:
            assert min(d.min_a, d.max_a) - EPS <= limit.current_a <= d.max_a + EPS
        assert (limit.current_a == 0) == limit.reason.value.startswith("paused") or (
            not limit.controlled
        )


@settings(deadline=None)
@given(sites(), base_loads(), sessions(fixed=False), st.booleans())
def test_a_better_class_never_gets_less_with_the_same_need(
    site: Site, base, demanded, settled: bool
) -> None:
    if settled:  # some run (their turn), some wait: a waiting better class still wins
        demanded, _ = settle(site, base, demanded, NOW - timedelta(minutes=1))
    limits = allocate(site, base, demanded, NOW).limits()
    for a, b in itertools.permutations(demanded, 2):
        better = class_of(a, NOW, site.voltage_v, POLICY) < class_of(b, NOW, site.voltage_v, POLICY)
        if better and _need(a) == _need(b):
            assert limits[a.key] >= limits[b.key] - EPS, (a, b)


@settings(deadline=None)
@given(sites(), base_loads(), sessions(fixed=False))
def test_within_a_class_nobody_is_below_another_that_could_give(site: Site, base, demanded) -> None:
    allocation = allocate(site, base, demanded, NOW)
    limits = allocation.limits()
    slack = [h - POLICY.margin_a for h in allocation.headroom_a]
    full = {p for p in range(3) if slack[p] < STEP_A / 2}
    for a in demanded:
        phases_a = {p.index for p in a.site_phases}
        if 0 < limits[a.key] < a.max_a - EPS:
            assert phases_a & full, ("below its max with room on every phase", a)
        for b in demanded:
            same_class = class_of(a, NOW, 230, POLICY) == class_of(b, NOW, 230, POLICY)
            if not same_class or limits[a.key] == 0 or limits[a.key] >= a.max_a - EPS:
                continue
            if limits[b.key] > limits[a.key] + STEP_A + EPS and limits[b.key] > b.min_a + EPS:
                only_a = phases_a - {p.index for p in b.site_phases}
                assert only_a & full, ("b could give to a", a, b, limits[a.key], limits[b.key])


@settings(deadline=None)
@given(sites(), base_loads(), sessions(), st.tuples(*[tenths(0, 5)] * 3))
def test_a_small_rise_of_the_other_load_sends_nothing(site: Site, base, demanded, noise) -> None:
    demanded, _ = settle(site, base, demanded, NOW)
    demanded, settled = settle(site, base, demanded, NOW)
    noisy_base = tuple(b + n for b, n in zip(base, noise, strict=True))
    noisy = allocate(site, noisy_base, demanded, NOW)
    last = {d.station_id: NOW for d in demanded}
    assert updates_to_send(noisy, settled.limits(), last, NOW) == ()


@settings(deadline=None)
@given(st.data(), st.integers(2, 30))
def test_with_too_many_cars_everybody_gets_power_in_turn(data: st.DataObject, count: int) -> None:
    cars = data.draw(sessions(max_size=count, fixed=False))
    cars = [
        replace(c, tier=0, departure=None, energy_needed_wh=None, soc_percent=None) for c in cars
    ]
    biggest_min = max([c.min_a for c in cars], default=6.0)
    # room for the largest minimum on every phase, but not for every car at once
    per_phase = data.draw(tenths(int((biggest_min + POLICY.margin_a) * 10), 600))
    site = Site("S1", SiteLimit((per_phase,) * 3))
    powered: set[tuple[str, int]] = set()
    at = NOW
    for _ in range(len(cars) + 1):
        cars, allocation = settle(site, (0.0, 0.0, 0.0), cars, at)
        powered |= {key for key, amps in allocation.limits().items() if amps > 0}
        at += POLICY.rotation_period
    assert powered == {c.key for c in cars}


@settings(deadline=None)
@given(sites(), base_loads(), sessions(), st.randoms())
def test_the_order_of_the_sessions_does_not_matter(site, base, demanded, rng: random.Random):
    shuffled = list(demanded)
    rng.shuffle(shuffled)
    assert allocate(site, base, demanded, NOW) == allocate(site, base, shuffled, NOW)


@settings(deadline=None)
@given(sites(), base_loads(), sessions(fixed=False), st.data())
def test_what_the_stations_keep_after_the_updates_fits_the_site(site, base, demanded, data):
    allocation = allocate(site, base, demanded, NOW)
    sent = {d.key: data.draw(tenths(0, int(d.max_a * 10))) for d in demanded}
    last = {d.station_id: NOW for d in demanded}  # every station rate-limited
    updates = updates_to_send(allocation, sent, last, NOW)
    kept = dict(sent) | {(u.station_id, u.connector_id): u.current_a for u in updates}
    free = _free(allocation)
    for p in range(3):
        if free[p] >= 0:
            load = sum(kept[d.key] for d in demanded if p in {q.index for q in d.site_phases})
            assert load <= free[p] + EPS


@settings(deadline=None)
@given(sites(), base_loads(), sessions(), st.tuples(*[tenths(-5, 5)] * 3))
def test_load_noise_either_way_sends_nothing_unless_someone_resumes(
    site: Site, base, demanded, noise
) -> None:
    demanded, _ = settle(site, base, demanded, NOW)
    demanded, settled = settle(site, base, demanded, NOW)
    noisy_base = tuple(max(b + n, 0.0) for b, n in zip(base, noise, strict=True))
    noisy = allocate(site, noisy_base, demanded, NOW)
    paused = {k for k, a in settled.limits().items() if a == 0}
    if {k for k, a in noisy.limits().items() if a == 0} == paused:
        last = {d.station_id: NOW for d in demanded}
        assert updates_to_send(noisy, settled.limits(), last, NOW) == ()
