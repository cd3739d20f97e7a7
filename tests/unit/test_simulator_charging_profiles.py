"""The limit a simulated station obeys from its installed profiles (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ingest.simulator.charging_profiles import (
    CHARGE_POINT_MAX,
    TX,
    TX_DEFAULT,
    InstalledProfile,
    Period,
    connector_limit_w,
    station_cap_w,
    station_limit_w,
)

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def profile(
    pid: int, purpose: str, limit: float, *, cid: int = 1, level: int = 0, **extra: object
) -> InstalledProfile:
    return InstalledProfile(pid, cid, level, purpose, (Period(0, limit),), T0, **extra)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_highest_stack_level_wins_within_a_purpose() -> None:
    low = profile(1, TX_DEFAULT, 10_000.0, level=0)
    high = profile(2, TX_DEFAULT, 4_000.0, level=3)
    higher_but_more = profile(3, TX_DEFAULT, 20_000.0, level=5)
    assert connector_limit_w([low, high], 1, T0, None, None) == 4_000.0
    assert connector_limit_w([low, high, higher_but_more], 1, T0, None, None) == 20_000.0


def test_a_tx_profile_overrides_the_default_only_for_its_transaction() -> None:
    default = profile(1, TX_DEFAULT, 4_000.0, cid=0)
    tx = profile(2, TX, 9_000.0, transaction_id="42")
    assert connector_limit_w([default, tx], 1, T0, "42", None) == 9_000.0
    assert connector_limit_w([default, tx], 1, T0, "43", None) == 4_000.0
    assert connector_limit_w([default, tx], 1, T0, None, None) == 4_000.0


def test_on_a_tie_the_connectors_own_profile_wins() -> None:
    everywhere = profile(1, TX_DEFAULT, 4_000.0, cid=0, level=2)
    own = profile(2, TX_DEFAULT, 7_000.0, cid=1, level=2)
    assert connector_limit_w([everywhere, own], 1, T0, None, None) == 7_000.0
    assert connector_limit_w([everywhere, own], 2, T0, None, None) == 4_000.0


def test_the_station_cap_bounds_every_connector() -> None:
    cap = profile(1, CHARGE_POINT_MAX, 5_000.0, cid=0)
    tx = profile(2, TX, 9_000.0, transaction_id="1")
    assert station_cap_w([cap, tx], T0) == 5_000.0
    assert station_limit_w([cap, tx], 1, T0, "1", None) == 5_000.0
    assert station_limit_w([tx], 1, T0, "1", None) == 9_000.0
    assert station_limit_w([], 1, T0, "1", None) is None


def test_a_profile_is_not_in_force_before_its_reaction_delay_nor_outside_validity() -> None:
    late = InstalledProfile(1, 1, 0, TX_DEFAULT, (Period(0, 3_000.0),), at(5))
    assert connector_limit_w([late], 1, at(4.9), None, None) is None
    assert connector_limit_w([late], 1, at(5), None, None) == 3_000.0
    valid = profile(2, TX_DEFAULT, 3_000.0, valid_from=at(60), valid_to=at(120))
    assert [connector_limit_w([valid], 1, at(s), None, None) for s in (59, 60, 119, 120)] == [
        None,
        3_000.0,
        3_000.0,
        None,
    ]


def test_schedule_periods_duration_and_an_absolute_start() -> None:
    stepped = InstalledProfile(
        1,
        1,
        0,
        TX_DEFAULT,
        (Period(0, 2_000.0), Period(600, 6_000.0)),
        T0,
        start=at(100),
        duration_s=1_200,
    )
    values = [connector_limit_w([stepped], 1, at(s), None, None) for s in (99, 100, 699, 700)]
    assert values == [None, 2_000.0, 2_000.0, 6_000.0]
    assert connector_limit_w([stepped], 1, at(1_300), None, None) is None  # duration over


def test_a_relative_profile_starts_with_the_transaction() -> None:
    relative = InstalledProfile(
        1, 1, 0, TX, (Period(0, 2_000.0), Period(300, 7_000.0)), T0, kind="Relative"
    )
    started = at(-200)
    assert connector_limit_w([relative], 1, at(50), "1", started) == 2_000.0
    assert connector_limit_w([relative], 1, at(100), "1", started) == 7_000.0


def test_a_daily_recurring_peak_window() -> None:
    # Every day from 17:00: 3 h at 4 kW, then no limit from this profile.
    peak = InstalledProfile(
        1,
        0,
        0,
        CHARGE_POINT_MAX,
        (Period(0, 4_000.0),),
        T0,
        kind="Recurring",
        recurrency="Daily",
        start=datetime(2026, 6, 1, 17, tzinfo=UTC),
        duration_s=3 * 3600,
    )
    assert station_cap_w([peak], datetime(2026, 7, 3, 18, tzinfo=UTC)) == 4_000.0
    assert station_cap_w([peak], datetime(2026, 7, 3, 20, 30, tzinfo=UTC)) is None
    assert station_cap_w([peak], datetime(2026, 7, 3, 16, 59, tzinfo=UTC)) is None


purposes = st.sampled_from([CHARGE_POINT_MAX, TX_DEFAULT, TX])


@st.composite
def installed(draw: st.DrawFn) -> list[InstalledProfile]:
    count = draw(st.integers(0, 6))
    found = []
    for pid in range(count):
        purpose = draw(purposes)
        cid = 0 if purpose == CHARGE_POINT_MAX else draw(st.sampled_from([0, 1, 2]))
        if purpose == TX:
            cid = draw(st.sampled_from([1, 2]))
        found.append(
            InstalledProfile(
                pid,
                cid,
                draw(st.integers(0, 4)),
                purpose,
                (Period(0, draw(st.floats(0, 22_000))),),
                at(draw(st.integers(0, 20))),
                transaction_id=draw(st.sampled_from([None, "1", "2"])) if purpose == TX else None,
            )
        )
    return found


@given(installed(), st.integers(0, 30), st.sampled_from([None, "1", "2"]))
def test_the_station_cap_is_never_exceeded(
    profiles: list[InstalledProfile], second: int, tx: str | None
) -> None:
    now = at(second)
    cap = station_cap_w(profiles, now)
    limit = station_limit_w(profiles, 1, now, tx, None)
    if cap is not None:
        assert limit is not None
        assert limit <= cap
    own = connector_limit_w(profiles, 1, now, tx, None)
    if own is not None:
        assert limit is not None
        assert limit <= own
    # The limit is one of the profiles' own limits: nothing is invented.
    if limit is not None:
        assert limit in {p.periods[0].limit_w for p in profiles}


@given(installed(), st.integers(0, 30))
def test_the_order_of_installation_does_not_matter(
    profiles: list[InstalledProfile], second: int
) -> None:
    now = at(second)
    assert station_limit_w(profiles, 1, now, "1", None) == station_limit_w(
        list(reversed(profiles)), 1, now, "1", None
    )
