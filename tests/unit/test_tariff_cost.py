"""The cost of a session under OCPI 2.2.1 tariffs: periods, dimensions, restrictions,
step_size, VAT and price limits, on sessions built as runs of power or parking."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.cost import price_session
from billing.session_usage import UsageError, parse_usage
from billing.tariffs import TariffDimensionType as Dim
from tests.support.billing import Run, component, element, session, session_json, tariff, utc

D = Decimal
# 2026-03-02 is a Monday; Amsterdam is UTC+1 in winter, UTC+2 in summer.
MONDAY_16_LOCAL = utc(2026, 3, 2, 15, 0)


def test_energy_only_is_kwh_times_price_with_vat() -> None:
    priced = price_session(
        tariff(element(component("ENERGY", "0.30", vat=21))),
        session(MONDAY_16_LOCAL, Run(60, 11000)),
    )
    assert priced.total_energy_kwh == D("11")
    assert priced.total_cost.excl_vat == D("3.30")
    assert priced.total_cost.incl_vat == D("3.99")  # 3.993 half up
    assert len(priced.periods) == 1


def test_parking_is_the_flat_register_at_zero_power_and_time_only_bills_charging() -> None:
    t = tariff(
        element(
            component("TIME", "1.20"),
            component("PARKING_TIME", "6.00"),
        )
    )
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(30, 7000), Run(20, 0)))
    assert [p.parking for p in priced.periods] == [False, True]
    assert priced.total_time_h == D(50) / 60
    assert priced.total_parking_time_h == D(20) / 60
    assert priced.by_dimension[Dim.TIME].excl_vat == D("0.60")  # 0.5 h charging
    assert priced.by_dimension[Dim.PARKING_TIME].excl_vat == D("2.00")  # 1/3 h parking
    assert priced.total_cost.excl_vat == D("2.60")


def test_a_paused_ev_drawing_power_with_a_flat_register_is_still_charging() -> None:
    t = tariff(element(component("TIME", "1.20"), component("PARKING_TIME", "6.00")))
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(30, 500, energy_wh=0)))
    assert [p.parking for p in priced.periods] == [False]


def test_time_of_day_element_starts_exactly_at_its_start_time_local() -> None:
    # Peak 17:00-20:00 local (16:00-19:00 UTC in winter) at 0.40, else 0.20.
    t = tariff(
        element(component("ENERGY", "0.40"), start_time="17:00", end_time="20:00"),
        element(component("ENERGY", "0.20")),
    )
    # 16:00-18:00 local at 6 kW: 6 kWh off-peak, 6 kWh peak.
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(120, 6000)))
    assert [p.start for p in priced.periods] == [MONDAY_16_LOCAL, utc(2026, 3, 2, 16, 0)]
    assert [p.energy_kwh for p in priced.periods] == [D(6), D(6)]
    assert priced.total_cost.excl_vat == D("3.60")


def test_a_window_that_wraps_midnight_covers_the_night() -> None:
    night = tariff(
        element(component("ENERGY", "0.10"), start_time="22:00", end_time="06:00"),
        element(component("ENERGY", "0.30")),
    )
    # 21:00 local Monday to 07:00 local Tuesday at 1 kW: 1 h day, 8 h night, 1 h day.
    priced = price_session(night, session(utc(2026, 3, 2, 20, 0), Run(600, 1000)))
    assert [(p.energy_kwh, p.elements[Dim.ENERGY]) for p in priced.periods] == [
        (D(1), 1),
        (D(8), 0),
        (D(1), 1),
    ]
    assert priced.total_cost.excl_vat == D("1.40")


def test_day_of_week_switches_at_local_midnight() -> None:
    weekend = tariff(
        element(component("ENERGY", "0.50"), day_of_week=["SATURDAY", "SUNDAY"]),
        element(component("ENERGY", "0.25")),
    )
    # Friday 23:00 local to Saturday 01:00 local (22:00-00:00 UTC in March).
    priced = price_session(weekend, session(utc(2026, 3, 6, 22, 0), Run(120, 3000)))
    assert [p.start for p in priced.periods] == [utc(2026, 3, 6, 22, 0), utc(2026, 3, 6, 23, 0)]
    assert priced.total_cost.excl_vat == D("2.25")  # 3 kWh x 0.25 + 3 kWh x 0.50


def test_kwh_restriction_cuts_where_the_register_crosses_it() -> None:
    # The first 10 kWh at 0.20, the rest at 0.35; 22 kW for an hour crosses 10 kWh at
    # 27 min 16.36 s.
    t = tariff(
        element(component("ENERGY", "0.20"), max_kwh="10"),
        element(component("ENERGY", "0.35")),
    )
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 22000)))
    assert [p.energy_kwh for p in priced.periods] == [D(10), D(12)]
    assert priced.periods[1].start == utc(2026, 3, 2, 15, 27, 16, 363636)
    assert priced.total_cost.excl_vat == D("6.20")


def test_power_restriction_changes_element_where_power_changes() -> None:
    fast = tariff(
        element(component("ENERGY", "0.59"), min_power="50"),
        element(component("ENERGY", "0.39")),
    )
    priced = price_session(fast, session(MONDAY_16_LOCAL, Run(30, 100_000), Run(30, 40_000)))
    assert [p.elements[Dim.ENERGY] for p in priced.periods] == [0, 1]
    assert priced.total_cost.excl_vat == D("37.30")  # 50 x 0.59 + 20 x 0.39


def test_current_restriction_uses_the_current_summed_over_phases() -> None:
    t = tariff(
        element(component("TIME", "2.00"), max_current="32"),
        element(component("TIME", "3.00")),
    )
    priced = price_session(
        t,
        session(MONDAY_16_LOCAL, Run(30, 7000, current_a=30), Run(30, 22000, current_a=96)),
    )
    assert priced.total_cost.excl_vat == D("2.50")


def test_duration_restriction_counts_from_the_session_start_parking_included() -> None:
    t = tariff(
        element(component("PARKING_TIME", "0.00"), max_duration=3600),
        element(component("PARKING_TIME", "4.00")),
        element(component("ENERGY", "0.30")),
    )
    # 30 min charging, then 90 min parking: parking is free until 1 h after the start.
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(30, 10_000), Run(90, 0)))
    parked = [p for p in priced.periods if p.parking]
    assert [(p.start, p.hours) for p in parked] == [
        (utc(2026, 3, 2, 15, 30), D("0.5")),
        (utc(2026, 3, 2, 16, 0), D(1)),
    ]
    assert priced.by_dimension[Dim.PARKING_TIME].excl_vat == D("4.00")


def test_flat_fee_is_charged_once() -> None:
    t = tariff(element(component("FLAT", "0.50"), component("ENERGY", "0.25")))
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 4000), Run(10, 0), Run(60, 4000)))
    flats = [line for line in priced.lines if line.dimension is Dim.FLAT]
    assert len(flats) == 1
    assert priced.total_cost.excl_vat == D("2.50")


def test_energy_step_size_rounds_the_session_total_once_on_the_last_period() -> None:
    # The spec's example: 4.3 kWh then 1.1 kWh with 500 Wh steps -> 5.5 kWh in all.
    t = tariff(
        element(component("ENERGY", "1.00", vat=None, step=500), end_time="17:00"),
        element(component("ENERGY", "1.00", vat=None, step=500)),
    )
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 4300), Run(60, 1100), register_wh=0))
    energy = [line for line in priced.lines if line.dimension is Dim.ENERGY]
    assert [line.billed_volume for line in energy] == [D("4.3"), D("1.2")]
    assert priced.total_cost.excl_vat == D("5.50")


def test_an_exact_multiple_of_the_step_is_not_rounded_up() -> None:
    t = tariff(element(component("ENERGY", "1.00", vat=None, step=500)))
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 5000)))
    assert priced.total_cost.excl_vat == D("5.00")


def test_time_step_applies_to_parking_when_parking_is_priced() -> None:
    # 21 min charging + 16 min parking with 10 min steps -> 21 + 20 (the spec's example).
    t = tariff(
        element(
            component("TIME", "6.00", vat=None, step=600),
            component("PARKING_TIME", "6.00", vat=None, step=600),
        )
    )
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(21, 7000), Run(16, 0)))
    billed = {line.dimension: line.billed_volume for line in priced.lines}
    assert billed[Dim.TIME] == D(21) / 60
    assert billed[Dim.PARKING_TIME] == D(20) / 60
    assert priced.total_cost.excl_vat == D("4.10")


def test_vat_omitted_means_no_vat_and_differs_per_component() -> None:
    t = tariff(element(component("ENERGY", "0.30", vat=None), component("FLAT", "1.00", vat=10)))
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 10_000)))
    assert priced.total_cost.excl_vat == D("4.00")
    assert priced.total_cost.incl_vat == D("4.10")
    vats = {line.dimension: line.vat for line in priced.lines}
    assert vats == {Dim.ENERGY: None, Dim.FLAT: D(10)}


def test_min_and_max_price_clamp_excl_and_incl_independently() -> None:
    cheap = tariff(
        element(component("ENERGY", "0.10")),
        min_price={"excl_vat": "5.00", "incl_vat": "6.05"},
    )
    priced = price_session(cheap, session(MONDAY_16_LOCAL, Run(60, 10_000)))
    assert priced.total_cost.excl_vat == D("5.00")
    assert priced.total_cost.incl_vat == D("6.05")
    assert priced.price_limit_adjustment.excl_vat == D("4.00")
    capped = tariff(element(component("ENERGY", "1.00")), max_price={"excl_vat": "20"})
    priced = price_session(capped, session(MONDAY_16_LOCAL, Run(120, 22_000)))
    assert priced.total_cost.excl_vat == D("20.00")
    assert priced.total_cost.incl_vat == D("24.20")


def test_no_matching_element_makes_that_dimension_free() -> None:
    t = tariff(element(component("ENERGY", "0.30"), start_time="00:00", end_time="06:00"))
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 5000)))
    assert priced.total_cost.excl_vat == D("0.00")


def test_reservation_elements_never_price_a_charging_session() -> None:
    t = tariff(
        element(component("TIME", "5.00"), reservation="RESERVATION"),
        element(component("ENERGY", "0.30")),
    )
    priced = price_session(t, session(MONDAY_16_LOCAL, Run(60, 5000)))
    assert priced.total_cost.excl_vat == D("1.50")


@pytest.mark.parametrize(
    ("start", "expected_peak_kwh"),
    [
        # Spring forward, Sunday 2026-03-29: 02:00 local jumps to 03:00. A 02:30-04:00
        # window begins at the jump (01:00 UTC) and lasts one real hour.
        (utc(2026, 3, 28, 23, 0), D(1)),
        # Fall back, Sunday 2026-10-25: 02:00-03:00 local happens twice; the window
        # 02:30-04:00 holds from 02:30 CEST, is left at 03:00 CEST -> 02:00 CET, and
        # holds again from 02:30 CET to 04:00 CET: 0.5 + 1.5 h.
        (utc(2026, 10, 24, 22, 0), D(2)),
    ],
)
def test_windows_follow_the_local_clock_on_dst_days(
    start: object, expected_peak_kwh: Decimal
) -> None:
    t = tariff(
        element(component("ENERGY", "1.00", vat=None), start_time="02:30", end_time="04:00"),
        element(component("ENERGY", "0.00", vat=None)),
    )
    # 1 kW for 6 real hours from midnight local.
    priced = price_session(t, session(start, Run(360, 1000)))  # type: ignore[arg-type]
    peak = sum((p.energy_kwh for p in priced.periods if p.elements[Dim.ENERGY] == 0), D(0))
    assert peak == expected_peak_kwh


def test_cdr_lists_periods_totals_and_a_breakdown_that_adds_up() -> None:
    t = tariff(
        element(component("FLAT", "0.35"), component("ENERGY", "0.2333"), end_time="17:00"),
        element(component("ENERGY", "0.3333"), component("PARKING_TIME", "1.111")),
    )
    cdr = price_session(
        t, session(MONDAY_16_LOCAL, Run(45, 7777), Run(37, 3333), Run(13, 0))
    ).to_cdr()
    assert cdr["total_time"] == D("1.5833")
    total = sum((line["cost"]["excl_vat"] for line in cdr["cost_breakdown"]), D(0))
    assert total == cdr["total_cost"]["excl_vat"]
    total_incl = sum((line["cost"]["incl_vat"] for line in cdr["cost_breakdown"]), D(0))
    assert total_incl == cdr["total_cost"]["incl_vat"]
    assert [d["type"] for d in cdr["charging_periods"][-1]["dimensions"]] == ["PARKING_TIME"]


def test_a_reservation_is_priced_before_the_session_with_its_own_step() -> None:
    t = tariff(
        element(
            component("FLAT", "1.00"),
            component("TIME", "6.00", step=600),
            reservation="RESERVATION",
        ),
        element(component("ENERGY", "0.30")),
    )
    body = session_json(MONDAY_16_LOCAL, Run(60, 10_000))
    body["reservation"] = {"start": "2026-03-02T14:48:00Z", "end": "2026-03-02T15:00:00Z"}
    priced = price_session(t, parse_usage(body))
    # 12 min reserved -> 20 min at 6.00/h + the 1.00 fee, then 10 kWh x 0.30.
    assert priced.reservation_cost is not None
    assert priced.reservation_cost.excl_vat == D("3.00")
    assert priced.total_cost.excl_vat == D("6.00")
    assert priced.periods[0].reservation
    assert priced.to_cdr()["charging_periods"][0]["dimensions"][0]["type"] == "RESERVATION_TIME"
    assert priced.total_time_h == 1  # the charging session only


def test_a_reservation_ending_after_the_session_started_is_refused() -> None:
    body = session_json(MONDAY_16_LOCAL, Run(60, 10_000))
    body["reservation"] = {"start": "2026-03-02T14:48:00Z", "end": "2026-03-02T15:30:00Z"}
    with pytest.raises(UsageError, match="ends when its session starts"):
        parse_usage(body)
    body["reservation"] = {"start": "2026-03-02T14:48:00Z", "end": "2026-03-02T14:00:00Z"}
    with pytest.raises(UsageError, match="must end after it starts"):
        parse_usage(body)
