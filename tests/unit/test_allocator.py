"""Hand-made cases of the site allocator and of the hysteresis of updates (smart_charging)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smart_charging.allocator import Reason, allocate
from smart_charging.hysteresis import UpdatePolicy, updates_to_send
from smart_charging.inputs import LimitWindow, Phase, SessionDemand, Site, SiteLimit, limit_at
from smart_charging.priority import Policy
from tests.support.allocation import NOW, controlled_totals, settle

HUNDRED_KW = Site("S1", SiteLimit.from_kw(100))  # 144.9 A per phase at 230 V


def _car(n: int, **fields) -> SessionDemand:
    return SessionDemand(f"CP{n:02d}", 1, NOW - timedelta(minutes=n), **fields)


def _kw(amps_per_phase: list[float]) -> float:
    return sum(amps_per_phase) * 230 / 1000


def test_twenty_evs_on_a_100_kw_site_share_it_evenly_within_the_limit() -> None:
    cars = [_car(n, max_a=16) for n in range(20)]
    allocation = allocate(HUNDRED_KW, (0.0, 0.0, 0.0), cars, NOW)
    currents = sorted({s.current_a for s in allocation.sessions})
    assert currents in ([7.2], [7.2, 7.3])  # (144.9 - 0.5 margin) / 20, in 0.1 A
    assert _kw(list(allocation.allocated_a)) <= 100
    assert {s.reason for s in allocation.sessions} == {Reason.FAIR_SHARE}


def test_members_and_urgent_departures_get_power_first() -> None:
    members = [_car(n, max_a=16, tier=1) for n in range(5)]
    urgent = [
        _car(n, max_a=16, departure=NOW + timedelta(hours=1), energy_needed_wh=10_000)
        for n in range(5, 8)
    ]
    others = [_car(n, max_a=16) for n in range(8, 20)]
    allocation = allocate(HUNDRED_KW, (0.0, 0.0, 0.0), members + urgent + others, NOW)
    limits = allocation.limits()
    # 20 minimums (120 A) fit; the 24.4 A left go to the members (the best class)
    assert all(limits[c.key] > 10 for c in members)
    assert all(limits[c.key] == 6.0 for c in urgent + others)
    reasons = {s.key: s.reason for s in allocation.sessions}
    assert {reasons[c.key] for c in urgent + others} == {Reason.PRIORITY}
    assert _kw(list(allocation.allocated_a)) <= 100
    without_members = allocate(HUNDRED_KW, (0.0, 0.0, 0.0), urgent + others, NOW).limits()
    assert min(without_members[c.key] for c in urgent) > max(without_members[c.key] for c in others)


def test_the_lowest_priority_is_paused_first_and_equals_take_turns() -> None:
    site = Site("S1", SiteLimit((24.5, 24.5, 24.5)))  # four minimums and the margin
    cars = [_car(n, tier=1 if n < 2 else 0) for n in range(6)]
    cars, first = settle(site, (0.0, 0.0, 0.0), cars, NOW)
    running = {s.station_id for s in first.sessions if s.current_a > 0}
    assert {"CP00", "CP01"} <= running
    assert len(running) == 4
    paused = {s.reason for s in first.sessions if s.current_a == 0}
    assert paused == {Reason.PAUSED_ROTATING}
    _, second = settle(site, (0.0, 0.0, 0.0), cars, NOW + Policy().rotation_period)
    now_running = {s.station_id for s in second.sessions if s.current_a > 0}
    assert {"CP00", "CP01"} <= now_running  # members keep power
    assert now_running - {"CP00", "CP01"} == {"CP02", "CP03", "CP04", "CP05"} - running


def test_a_session_keeps_its_turn_until_the_rotation_period_is_over() -> None:
    site = Site("S1", SiteLimit((12.5, 12.5, 12.5)))
    cars, first = settle(site, (0.0, 0.0, 0.0), [_car(n) for n in range(3)], NOW)
    _, soon = settle(site, (0.0, 0.0, 0.0), cars, NOW + timedelta(minutes=5))
    assert first.limits() == soon.limits()


def test_stations_that_cannot_be_steered_are_budgeted_at_their_full_draw() -> None:
    site = Site("S1", SiteLimit((63.0, 63.0, 63.0)))
    offline = _car(1, max_a=32, measured_a=20, online=False)
    ignores = _car(2, max_a=16, measured_a=24, compliant=False)  # draws above its max
    steered = _car(3, max_a=32)
    allocation = allocate(site, (0.0, 0.0, 0.0), [offline, ignores, steered], NOW)
    by_key = {s.key: s for s in allocation.sessions}
    assert by_key[offline.key].current_a == 32
    assert by_key[offline.key].reason is Reason.FIXED_OFFLINE
    assert by_key[ignores.key].current_a == 24
    assert by_key[ignores.key].reason is Reason.FIXED_NON_COMPLIANT
    assert allocation.fixed_load_a == (56.0, 56.0, 56.0)
    assert by_key[steered.key].current_a == 6.5  # 63 - 56 - 0.5 margin
    assert allocation.limits() == {steered.key: 6.5}


def test_fixed_loads_over_the_limit_pause_every_steered_session() -> None:
    site = Site("S1", SiteLimit((20.0, 20.0, 20.0)))
    cars = [_car(1, controllable=False, max_a=32), _car(2)]
    allocation = allocate(site, (0.0, 0.0, 0.0), cars, NOW)
    assert allocation.headroom_a == (-12.0, -12.0, -12.0)
    assert allocation.limits() == {cars[1].key: 0.0}
    assert allocation.sessions[1].reason is Reason.PAUSED_NO_CAPACITY


def test_single_phase_sessions_load_only_their_site_phase() -> None:
    site = Site("S1", SiteLimit((16.5, 40.0, 40.0)))
    on_l1 = _car(1, phases=1, phase=Phase.L1)
    wired_to_l3 = _car(2, phases=1, phase=Phase.L1, rotation="TRS")  # station L1 on grid T
    three = _car(3)
    allocation = allocate(site, (0.0, 0.0, 0.0), [on_l1, wired_to_l3, three], NOW)
    limits = allocation.limits()
    assert limits[on_l1.key] == limits[three.key] == 8.0  # L1 full: (16.5 - 0.5) / 2
    assert limits[wired_to_l3.key] == 31.5  # L3: 40 - 8 (the three-phase car) - 0.5 margin
    assert controlled_totals(allocation) == pytest.approx([16.0, 8.0, 39.5])


def test_less_laxity_and_lower_soc_rank_first() -> None:
    site = Site("S1", SiteLimit((30.5, 30.5, 30.5)))
    relaxed = _car(1, departure=NOW + timedelta(hours=8), energy_needed_wh=10_000)
    tight = _car(2, departure=NOW + timedelta(hours=2), energy_needed_wh=20_000)
    low = _car(3, soc_percent=10)
    high = _car(4, soc_percent=90)
    by_laxity = allocate(site, (0.0, 0.0, 0.0), [relaxed, tight, low, high], NOW).limits()
    assert by_laxity[tight.key] == 12.0  # the 6 A above the minimums all go to the tightest
    assert by_laxity[relaxed.key] == by_laxity[low.key] == by_laxity[high.key] == 6.0
    by_soc = allocate(site, (0.0, 0.0, 0.0), [low, high], NOW).limits()
    assert by_soc == {low.key: 24.0, high.key: 6.0}


def test_a_peak_window_lowers_the_limit_only_while_it_is_on() -> None:
    base = SiteLimit((100.0, 100.0, 100.0))
    peak = LimitWindow(NOW, NOW + timedelta(hours=3), SiteLimit((50.0, 60.0, 60.0)))
    grid = LimitWindow(NOW + timedelta(hours=1), NOW + timedelta(hours=2), SiteLimit.from_kw(30))
    assert limit_at(base, [peak, grid], NOW - timedelta(seconds=1)) == base
    assert limit_at(base, [peak, grid], NOW).per_phase_a == (50.0, 60.0, 60.0)
    assert limit_at(base, [peak, grid], NOW + timedelta(hours=1)).per_phase_a == (43.4,) * 3


def test_small_changes_wait_and_large_ones_respect_the_station_rate_limit() -> None:
    site = Site("S1", SiteLimit((30.5, 30.5, 30.5)))
    cars = [_car(1, max_a=32), _car(2, max_a=32)]
    allocation = allocate(site, (0.0, 0.0, 0.0), cars, NOW)  # 15 A each
    policy = UpdatePolicy(threshold_a=1.0, min_interval=timedelta(minutes=5))
    recently = {"CP01": NOW - timedelta(minutes=1), "CP02": NOW - timedelta(minutes=10)}
    small = {cars[0].key: 15.5, cars[1].key: 14.5}
    assert updates_to_send(allocation, small, recently, NOW, policy) == ()
    large = {cars[0].key: 10.0, cars[1].key: 10.0}
    sent = updates_to_send(allocation, large, recently, NOW, policy)
    assert [(u.station_id, u.current_a, u.why) for u in sent] == [("CP02", 15.0, "change")]


def test_a_pause_and_a_decrease_the_site_needs_are_sent_at_once() -> None:
    site = Site("S1", SiteLimit((13.0, 13.0, 13.0)))
    cars = [_car(1), _car(2), _car(3, tier=1)]
    allocation = allocate(site, (0.0, 0.0, 0.0), cars, NOW)
    limits = allocation.limits()
    assert limits[cars[2].key] == 6.5
    assert sorted(limits.values()) == [0.0, 6.0, 6.5]
    sent = {cars[0].key: 6.9, cars[1].key: 6.9}  # both ran; the member is new
    all_recent = {"CP01": NOW, "CP02": NOW, "CP03": NOW}
    updates = updates_to_send(allocation, sent, all_recent, NOW)
    whys = {u.station_id: u.why for u in updates}
    assert whys["CP03"] == "new"
    assert set(whys.values()) == {"new", "pause", "site limit"}
    assert updates[-1].station_id == "CP03"  # decreases land before the increase


def test_a_limit_back_up_to_the_minimum_is_a_resume_however_small() -> None:
    site = Site("S1", SiteLimit((6.5, 6.5, 6.5)))
    car = _car(1)
    allocation = allocate(site, (0.0, 0.0, 0.0), [car], NOW)
    assert allocation.limits() == {car.key: 6.0}
    below_min = {car.key: 5.5}  # the EV does not charge below 6 A
    long_ago = {"CP01": NOW - timedelta(hours=1)}
    [update] = updates_to_send(allocation, below_min, long_ago, NOW)
    assert (update.current_a, update.why) == (6.0, "resume")
    assert updates_to_send(allocation, below_min, {"CP01": NOW}, NOW) == ()  # rate limited


def test_the_last_tenths_go_to_the_sessions_at_the_level_not_to_one_held_above_it() -> None:
    site = Site("S1", SiteLimit((22.6, 22.6, 22.6)))  # the minimums, 0.1 A, the margin
    high_min = _car(9, min_a=10, max_a=10.1)  # waited longest: first in its class
    small = [_car(2, max_a=6.1), _car(3, max_a=6.1)]
    limits = allocate(site, (0.0, 0.0, 0.0), [high_min, *small], NOW).limits()
    assert limits[high_min.key] == 10.0  # its minimum is above the others' level: no extra
    assert sorted(limits[c.key] for c in small) == [6.0, 6.1]
