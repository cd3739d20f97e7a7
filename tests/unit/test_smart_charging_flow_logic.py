"""The smart-charging flow's per-site decisions (flows.smart_charging.logic), pure."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from flows.smart_charging.logic import (
    FAIL_SAFE_PROFILE_ID,
    AllocationView,
    Connection,
    ConnectorRating,
    ControlPolicy,
    Drawn,
    Ended,
    Event,
    Needs,
    NeedsDeclared,
    NonCompliant,
    OtherLoad,
    Outcome,
    Output,
    ProfileRequest,
    RulesChanged,
    SiteControl,
    SiteRules,
    Started,
    apply,
    fail_safe_shares,
)
from smart_charging.inputs import LimitWindow, SiteLimit

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
POLICY = ControlPolicy()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rules(limit_a: float = 40.0, stations: int = 3, **extra: object) -> SiteRules:
    ids = [f"CP{n}" for n in range(1, stations + 1)]
    return SiteRules(
        site_id="S1",
        base_limit=SiteLimit((limit_a, limit_a, limit_a)),
        stations=dict.fromkeys(ids, "1.6"),
        connectors={(cp, 1): ConnectorRating(max_a=32.0) for cp in ids},
        **extra,  # type: ignore[arg-type]
    )


def run(state: SiteControl, events: Sequence[Event]) -> list[Output]:
    out: list[Output] = []
    for event in events:
        out.extend(apply(state, event, POLICY))
    return out


def tx_requests(out: list[Output]) -> list[ProfileRequest]:
    return [o for o in out if isinstance(o, ProfileRequest) and o.purpose == "tx"]


def accept_all(state: SiteControl, out: list[Output]) -> list[Output]:
    """The stations accept every profile of ``out``."""
    return run(
        state,
        [
            Outcome(o.station_id, o.command_id, "accepted")
            for o in out
            if isinstance(o, ProfileRequest)
        ],
    )


def tick(seconds: float) -> OtherLoad:
    """Telemetry time passes (a reading of no meter of the site)."""
    return OtherLoad("NOT-A-SITE-METER", at(seconds), 0.0)


def started(n: int, seconds: float = 0, tag: str | None = None) -> Started:
    return Started(f"CP{n}", 1, str(n), tag, at(seconds))


def test_sessions_get_tx_profiles_within_the_site_limit() -> None:
    state = SiteControl()
    events: list[Event] = [
        RulesChanged(rules()),
        started(1),
        started(2, 1),
        started(3, 2),
        tick(15),
        tick(30),
    ]
    out = run(state, events)
    latest = {(r.station_id, r.connector_id): r for r in tx_requests(out)}
    assert sorted(latest) == [("CP1", 1), ("CP2", 1), ("CP3", 1)]
    total = sum(r.periods[0][1] for r in latest.values())
    assert total <= 40.0
    assert all(r.transaction_id == r.station_id[2:] for r in latest.values())
    assert all(r.stack_level == 1 and r.profile_id == 900_101 for r in latest.values())
    views = [o for o in out if isinstance(o, AllocationView)]
    assert views[-1].allocation.sessions[0].reason == "fair share"


def test_every_station_gets_a_fail_safe_that_falls_to_its_share() -> None:
    state = SiteControl()
    out = run(state, [RulesChanged(rules(limit_a=40.0)), started(1)])
    caps = [o for o in out if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"]
    assert sorted(c.station_id for c in caps) == ["CP1", "CP2", "CP3"]
    cap = caps[0]
    assert (cap.connector_id, cap.stack_level, cap.profile_id) == (0, 0, FAIL_SAFE_PROFILE_ID)
    assert cap.periods == ((0, 32.0), (1800, 13.3))  # 40 A / 3 stations, rounded down
    assert cap.start_schedule == at(0)
    defaults = [o for o in out if isinstance(o, ProfileRequest) and o.purpose == "tx_default"]
    # A new session waits at 0 A for its TxProfile while the flow runs; the share after.
    assert sorted(d.periods for d in defaults) == [((0, 0.0), (1800, 13.3))] * 3
    # Renewed every half lease (telemetry time), not before.
    assert not [
        o
        for o in run(state, [Drawn("CP1", 1, "1", at(899), 10.0)])
        if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"
    ]
    renewed = [
        o
        for o in run(state, [Drawn("CP1", 1, "1", at(900), 10.0)])
        if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"
    ]
    assert len(renewed) == 3
    assert renewed[0].start_schedule == at(900)


@given(
    st.floats(0, 500).map(lambda a: round(a, 1)),
    st.lists(st.sampled_from([6.0, 16.0, 32.0]), min_size=1, max_size=30),
)
def test_fail_safe_shares_never_exceed_the_site_limit(limit: float, maxima: list[float]) -> None:
    site = SiteRules(
        "S",
        SiteLimit((limit, limit, limit)),
        stations={f"CP{i}": "1.6" for i in range(len(maxima))},
        connectors={(f"CP{i}", 1): ConnectorRating(max_a=m) for i, m in enumerate(maxima)},
    )
    fixed = frozenset(f"CP{i}" for i in range(0, len(maxima), 4))
    for budgeted in (frozenset(), fixed):
        shares = fail_safe_shares(site, T0, budgeted)
        obeying = sum(v for s, v in shares.items() if s not in budgeted)
        full = sum(m for i, m in enumerate(maxima) if f"CP{i}" in budgeted)
        assert obeying <= max(0.0, limit - full) + 1e-9
        assert all(v >= 0 for v in shares.values())


def test_a_failed_fail_safe_is_retried_after_the_retry_interval() -> None:
    state = SiteControl()
    out = run(state, [RulesChanged(rules(stations=1)), started(1)])
    cap = next(o for o in out if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max")
    run(state, [Outcome("CP1", cap.command_id, "offline")])

    def caps(seconds: float) -> list[Output]:
        return [
            o
            for o in run(state, [Drawn("CP1", 1, "1", at(seconds), 5.0)])
            if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"
        ]

    assert caps(59) == []
    assert len(caps(60)) == 1


def test_a_station_drawing_above_its_accepted_limit_is_marked_non_compliant() -> None:
    state = SiteControl()
    out = run(state, [RulesChanged(rules(limit_a=20.0, stations=2)), started(1), started(2)])
    accept_all(state, out)
    limit = state.sent[("CP1", 1)]
    # Above the limit inside the reaction window: not yet a breach.
    assert not [
        o
        for o in run(state, [Drawn("CP1", 1, "1", at(29), limit + 5)])
        if isinstance(o, NonCompliant)
    ]
    out = run(state, [Drawn("CP1", 1, "1", at(31), limit + 5)])
    marks = [o for o in out if isinstance(o, NonCompliant)]
    assert marks == [NonCompliant("CP1", 1, at(31), limit, limit + 5)]
    view = [o for o in out if isinstance(o, AllocationView)][-1]
    reasons = {s.station_id: s.reason for s in view.allocation.sessions}
    assert reasons["CP1"] == "budgeted at full draw: non-compliant"
    assert "CP1" in view.non_compliant
    # CP2 gets what is left after CP1's full draw (32 A max > 20 A: CP2 pauses).
    cp2 = [r for r in tx_requests(out) if r.station_id == "CP2"]
    assert cp2[-1].periods[0][1] == 0.0
    # A draw within the tolerance does not mark.
    assert "CP2" not in state.non_compliant


def test_a_station_that_rejects_profiles_is_budgeted_at_full_draw() -> None:
    state = SiteControl()
    out = run(state, [RulesChanged(rules(limit_a=64.0, stations=2)), started(1), started(2)])
    cp1 = next(r for r in tx_requests(out) if r.station_id == "CP1")
    out = run(state, [Outcome("CP1", cp1.command_id, "rejected")])
    view = [o for o in out if isinstance(o, AllocationView)][-1]
    reasons = {s.station_id: s.reason for s in view.allocation.sessions}
    assert reasons["CP1"] == "budgeted at full draw: rejects profiles"
    assert view.budgeted == ("CP1",)
    assert state.sent[("CP2", 1)] <= 64.0 - 32.0


def test_a_lower_limit_window_is_honoured_at_once() -> None:
    state = SiteControl()
    base = rules(limit_a=60.0, stations=3)
    out = run(state, [RulesChanged(base), started(1), started(2), started(3), tick(10), tick(20)])
    accept_all(state, out)
    assert sum(state.sent.values()) > 40.0
    window = LimitWindow(at(0), at(3600), SiteLimit((30.0, 30.0, 30.0)))
    lowered = dataclasses.replace(base, windows=(window,))
    out = run(state, [Drawn("CP1", 1, "1", at(30), 1.0), RulesChanged(lowered)])
    assert tx_requests(out)  # decreases sent although the rate limit holds changes
    assert sum(state.sent.values()) <= 30.0
    caps = [o for o in out if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"]
    assert {c.periods[1][1] for c in caps} == {10.0}  # the fail-safe follows the window


def test_other_load_from_the_site_meter_is_subtracted() -> None:
    state = SiteControl()
    site = rules(limit_a=40.0, stations=1, load_meters=frozenset({"MTR-OTHER"}))
    run(state, [RulesChanged(site), started(1)])
    assert state.sent[("CP1", 1)] == 32.0
    run(state, [OtherLoad("MTR-OTHER", at(5), 20.0)])
    assert state.sent[("CP1", 1)] <= 20.0
    run(state, [OtherLoad("MTR-UNKNOWN", at(6), 40.0)])  # not this site's meter
    assert state.sent[("CP1", 1)] <= 20.0


def test_members_and_urgent_departures_come_first() -> None:
    needs = {"2": Needs(departure=at(3600), energy_wh=30_000.0)}
    site = rules(limit_a=15.0, stations=3, tiers={"MEMBER": 1}, needs=needs)
    state = SiteControl()
    # The standard session plugs in first, and still gives way.
    out = run(state, [RulesChanged(site), started(3, 0), started(1, 1, "MEMBER"), started(2, 2)])
    view = [o for o in out if isinstance(o, AllocationView)][-1]
    limits = view.allocation.limits()
    assert limits[("CP1", 1)] >= 6.0
    assert limits[("CP3", 1)] == 0.0  # neither member nor urgent: waits
    assert limits[("CP2", 1)] >= 6.0


def test_waiting_sessions_take_turns_every_rotation_period() -> None:
    state = SiteControl()
    site = rules(limit_a=12.6, stations=3)  # two minimums fit, not three
    out = run(state, [RulesChanged(site), started(1), started(2, 1), started(3, 2)])
    accept_all(state, out)
    powered: set[str] = set()
    for minute in range(1, 61):
        run(state, [Drawn("CP1", 1, "1", at(minute * 60), 0.0)])
        powered |= {k[0] for k, v in state.sent.items() if v > 0}
    assert powered == {"CP1", "CP2", "CP3"}


def test_an_ended_session_frees_its_share() -> None:
    state = SiteControl()
    run(state, [RulesChanged(rules(limit_a=40.0, stations=2)), started(1), started(2), tick(15)])
    assert state.sent[("CP2", 1)] < 32.0
    run(state, [Ended("CP1", 1, "1", at(400))])
    assert ("CP1", 1) not in state.sent
    assert state.sent[("CP2", 1)] == 32.0


def test_the_same_events_give_the_same_commands_and_the_state_snapshots() -> None:
    events: list[Event] = [RulesChanged(rules()), started(1), started(2, 5), started(3, 9)]
    first, second = SiteControl(), SiteControl()
    assert run(first, events) == run(second, events)
    copy = pickle.loads(pickle.dumps(first))
    later = [Drawn("CP1", 1, "1", at(1200), 3.0)]
    assert run(copy, later) == run(first, later)


def test_a_window_that_begins_later_is_applied_when_it_begins() -> None:
    state = SiteControl()
    window = LimitWindow(at(100), at(3600), SiteLimit((20.0, 20.0, 20.0)))
    site = dataclasses.replace(rules(limit_a=60.0, stations=2), windows=(window,))
    out = run(state, [RulesChanged(site), started(1), started(2)])
    accept_all(state, out)
    assert sum(state.sent.values()) > 20.0
    run(state, [Drawn("CP1", 1, "1", at(89), 30.0)])
    assert sum(state.sent.values()) > 20.0  # not yet
    run(state, [Drawn("CP1", 1, "1", at(90), 30.0)])  # applied ``lead`` (10 s) early
    assert sum(state.sent.values()) <= 20.0


def test_fail_safes_count_a_non_compliant_station_at_its_ceiling() -> None:
    state = SiteControl()
    site = rules(limit_a=40.0, stations=2)
    out = run(state, [RulesChanged(site), started(1), started(2), tick(15)])
    accept_all(state, out)
    out = run(state, [Drawn("CP1", 1, "1", at(60), 32.0)])
    assert any(isinstance(o, NonCompliant) for o in out)
    caps = {
        o.station_id: o.periods[-1][1]
        for o in out
        if isinstance(o, ProfileRequest) and o.purpose == "charge_point_max"
    }
    assert caps == {"CP1": 32.0, "CP2": 8.0}


def test_declared_needs_are_sent_without_waiting_for_the_rate_limit() -> None:
    state = SiteControl()
    site = rules(limit_a=12.0, stations=2)  # a new minimum needs the margin: CP2 waits
    out = run(state, [RulesChanged(site), started(1), started(2, 1)])
    accept_all(state, out)
    assert state.sent[("CP2", 1)] == 0.0
    urgent = dataclasses.replace(site, needs={"2": Needs(departure=at(1800), energy_wh=5_000)})
    out = run(state, [Drawn("CP1", 1, "1", at(10), 12.0), RulesChanged(urgent)])
    out += run(state, [Drawn("CP1", 1, "1", at(20), 6.0)])  # after the decreases
    sent = {r.station_id: r.periods[0][1] for r in tx_requests(out)}
    assert sent["CP2"] >= 6.0  # resumed without waiting for the rate limit (60 s)
    assert sum(state.sent.values()) <= 12.0


def test_capacity_moves_decreases_first_then_the_increases() -> None:
    state = SiteControl()
    site = rules(limit_a=12.0, stations=2)
    out = run(state, [RulesChanged(site), started(1), started(2, 1)])
    accept_all(state, out)
    assert (state.sent[("CP1", 1)], state.sent[("CP2", 1)]) == (11.5, 0.0)
    # CP2 becomes urgent: CP1 gives way. Its decrease goes first, CP2's resume later.
    urgent = dataclasses.replace(site, needs={"2": Needs(departure=at(1800), energy_wh=5_000)})
    out = run(state, [Drawn("CP1", 1, "1", at(10), 11.0), RulesChanged(urgent)])
    assert [(r.station_id, r.periods[0][1]) for r in tx_requests(out)] == [("CP1", 6.0)]
    assert not tx_requests(run(state, [Drawn("CP1", 1, "1", at(19), 6.0)]))
    resumed = tx_requests(run(state, [Drawn("CP1", 1, "1", at(20), 6.0)]))
    assert [(r.station_id, r.periods[0][1]) for r in resumed] == [("CP2", 6.0)]
    assert sum(state.sent.values()) <= 12.0


def ev_needs(n: int, seconds: float, **fields: object) -> NeedsDeclared:
    """What CP{n}'s EV declares over ISO 15118 (2.0.1 NotifyEVChargingNeeds)."""
    fields.setdefault("needs", Needs())
    return NeedsDeclared(f"CP{n}", 1, at(seconds), **fields)  # type: ignore[arg-type]


def test_the_evs_own_departure_makes_its_session_urgent() -> None:
    state = SiteControl()
    site = rules(limit_a=12.0, stations=2)  # one session at a time above the minimum
    out = run(state, [RulesChanged(site), started(1), started(2, 1)])
    accept_all(state, out)
    assert state.sent[("CP2", 1)] == 0.0
    urgent = ev_needs(2, 10, needs=Needs(departure=at(1800), energy_wh=5_000))
    out = run(state, [urgent])
    out += run(state, [Drawn("CP1", 1, "1", at(20), 6.0)])  # after the decreases
    sent = {r.station_id: r.periods[0][1] for r in tx_requests(out)}
    assert sent["CP2"] >= 6.0  # without waiting for the station's rate limit
    assert sum(state.sent.values()) <= 12.0
    assert run(state, [urgent]) == []  # the same needs again: nothing new to send


def test_needs_the_driver_gave_through_the_api_win_over_the_evs() -> None:
    state = SiteControl()
    site = rules(limit_a=12.0, stations=2)
    out = run(state, [RulesChanged(site), started(1), started(2, 1)])
    accept_all(state, out)
    assert state.sent[("CP2", 1)] == 0.0
    # The car says it stays all day; the driver's app says it leaves in half an hour.
    run(state, [ev_needs(2, 5, needs=Needs(departure=at(36_000), energy_wh=1_000))])
    urgent = dataclasses.replace(site, needs={"2": Needs(departure=at(1800), energy_wh=5_000)})
    out = run(state, [Drawn("CP1", 1, "1", at(10), 12.0), RulesChanged(urgent)])
    out += run(state, [Drawn("CP1", 1, "1", at(20), 6.0)])
    assert state.sent[("CP2", 1)] >= 6.0


def test_the_evs_current_range_and_phases_narrow_the_connectors() -> None:
    state = SiteControl()
    site = rules(limit_a=40.0, stations=2)
    out = run(state, [RulesChanged(site), started(1), started(2, 1), tick(15)])
    accept_all(state, out)
    assert 19.0 < state.sent[("CP1", 1)] <= 20.0
    assert 19.0 < state.sent[("CP2", 1)] <= 20.0
    accept_all(state, run(state, [ev_needs(1, 20, ev_min_a=6.0, ev_max_a=10.0, phases=1)]))
    assert state.sent[("CP1", 1)] <= 10.0  # what the car takes, at once
    run(state, [tick(400)])  # the other station's rate limit (5 min) has passed
    assert state.sent[("CP2", 1)] >= 29.0  # the rest goes to the other session


def test_needs_sent_just_before_the_transaction_started_belong_to_it() -> None:
    state = SiteControl()
    site = rules(limit_a=12.0, stations=2)
    run(state, [RulesChanged(site), started(1)])
    early = ev_needs(2, 5, needs=Needs(departure=at(1200), energy_wh=4_000))
    run(state, [early, started(2, 30)])
    assert state.sessions[("CP2", 1)].declared == early
    # Needs long before a start are another car's.
    run(state, [Ended("CP2", 1, "2", at(60)), ev_needs(2, 100, needs=Needs())])
    run(state, [Started("CP2", 1, "22", None, at(100 + 11 * 60))])
    assert state.sessions[("CP2", 1)].declared is None


def test_an_operator_reset_controls_a_non_compliant_station_again() -> None:
    state = SiteControl()
    site = rules(limit_a=40.0, stations=2)
    accept_all(state, run(state, [RulesChanged(site), started(1), started(2), tick(15)]))
    assert any(
        isinstance(o, NonCompliant) for o in run(state, [Drawn("CP1", 1, "1", at(60), 32.0)])
    )
    assert "CP1" in state.non_compliant
    run(state, [RulesChanged(dataclasses.replace(site, tiers={"MEMBER": 1}))])
    assert "CP1" in state.non_compliant  # another change of the rules clears nothing
    out = run(state, [RulesChanged(dataclasses.replace(site, resets={"CP1": 1}))])
    assert "CP1" not in state.non_compliant
    resent = {r.station_id: r.periods[0][1] for r in tx_requests(out)}
    assert resent["CP1"] < 32.0  # its limit again, not its full draw
    accept_all(state, out)
    # Still ignoring it: marked again.
    marked = run(state, [Drawn("CP1", 1, "1", at(200), 32.0)])
    assert any(isinstance(o, NonCompliant) for o in marked)


def test_a_station_the_gateway_saw_go_offline_is_budgeted_until_it_is_back() -> None:
    state = SiteControl()
    site = rules(limit_a=40.0, stations=2)
    accept_all(state, run(state, [RulesChanged(site), started(1), started(2), tick(15)]))
    before = dict(state.sent)
    out = run(state, [Connection("CP1", at(30), online=False)])
    view = [o for o in out if isinstance(o, AllocationView)][-1]
    assert "CP1" in view.budgeted
    assert run(state, [Connection("CP1", at(31), online=False)]) == []  # nothing new
    assert state.sent[("CP2", 1)] < before[("CP2", 1)]  # CP1 counted at its full draw
    out = run(state, [Connection("CP1", at(300), online=True)])
    again = [o for o in out if isinstance(o, ProfileRequest) and o.station_id == "CP1"]
    assert {o.purpose for o in again} == {"tx", "charge_point_max", "tx_default"}
    assert "CP1" not in state.offline
    assert run(state, [Connection("CP-ELSEWHERE", at(301), online=False)]) == []
