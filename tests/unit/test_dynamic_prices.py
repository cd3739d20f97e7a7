"""Dynamic prices: a time-of-use profile is an ordinary OCPI tariff; demand moves the
energy price within the operator's bounds; a quote freezes it; the driver sees every
component in the order AFIR asks for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.cost import price_session
from billing.dynamic import (
    DemandPolicy,
    DemandSnapshot,
    TouProfile,
    TouWindow,
    adjusted,
    make_quote,
    price_lines,
)
from billing.tariffs import DayOfWeek, TariffDimensionType
from tests.support.billing import Run, component, element, session, tariff, utc

D = Decimal
NOW = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)  # Monday 17:30 in Amsterdam
PROFILE = TouProfile(
    currency="EUR",
    base_energy_price=D("0.30"),
    windows=(
        TouWindow("17:00", "21:00", D("0.45")),
        TouWindow("23:00", "07:00", D("0.19")),
        TouWindow("10:00", "16:00", D("0.22"), days=(DayOfWeek.SATURDAY, DayOfWeek.SUNDAY)),
    ),
    vat=D(21),
    start_fee=D("0.50"),
    parking_price_per_hour=D("6.00"),
)


def test_a_profile_prices_like_the_windows_say() -> None:
    t = PROFILE.to_tariff(tariff_id="TOU-1", country_code="NL", party_id="CFL", last_updated=NOW)
    # Monday 16:00-18:00 local at 6 kW: 6 kWh at 0.30, 6 kWh at 0.45, start fee 0.50.
    priced = price_session(t, session(utc(2026, 3, 2, 15, 0), Run(120, 6000)))
    assert priced.total_cost.excl_vat == D("5.00")
    # Saturday 11:00-12:00 local: the weekend window.
    weekend = price_session(t, session(utc(2026, 3, 7, 10, 0), Run(60, 10_000)))
    assert weekend.total_cost.excl_vat == D("2.70")  # 10 kWh x 0.22 + 0.50
    # Night, wrapping midnight.
    night = price_session(t, session(utc(2026, 3, 2, 23, 0), Run(60, 10_000)))
    assert night.total_cost.excl_vat == D("2.40")


@pytest.mark.parametrize(
    ("utilisation", "occupancy", "factor"),
    [
        (D("0.5"), D("0.5"), D(1)),  # below the threshold: the tariff's price
        (D("0.8"), None, D(1)),  # at the threshold
        (D("0.9"), D("0.2"), D("1.1")),  # halfway above it: half the uplift
        (None, D("1.0"), D("1.2")),  # full occupancy: the whole uplift
        (D("1.7"), None, D("1.2")),  # overload is full demand, not more
        (None, None, D(1)),  # nothing known: no adjustment
    ],
)
def test_demand_moves_the_price_linearly_above_the_threshold(
    utilisation: Decimal | None, occupancy: Decimal | None, factor: Decimal
) -> None:
    policy = DemandPolicy(threshold=D("0.8"), max_uplift=D("0.2"))
    assert policy.factor(DemandSnapshot(utilisation, occupancy)) == factor


@given(
    st.decimals(min_value=0, max_value=2, places=3), st.decimals(min_value=0, max_value=2, places=3)
)
def test_the_adjusted_energy_price_stays_within_the_operator_bounds(
    utilisation: Decimal, occupancy: Decimal
) -> None:
    policy = DemandPolicy(threshold=D("0.6"), max_uplift=D("0.5"), max_energy_price=D("0.40"))
    base = tariff(element(component("ENERGY", "0.30"), component("TIME", "1.00")))
    factor = policy.factor(DemandSnapshot(utilisation, occupancy))
    quoted = adjusted(base, factor, policy, tariff_id="Q-1")
    energy = quoted.elements[0].price_components[0]
    assert D("0.30") <= energy.price <= D("0.40")
    assert quoted.elements[0].price_components[1].price == D("1.00")  # only ENERGY moves


def test_a_quote_freezes_the_price_and_expires() -> None:
    policy = DemandPolicy(threshold=D("0.5"), max_uplift=D("0.4"))
    base = tariff(element(component("ENERGY", "0.30")))
    quote = make_quote(
        base,
        now=NOW,
        validity=timedelta(minutes=5),
        quote_tariff_id="Q-2026-1",
        demand=DemandSnapshot(D("1.0"), None),
        policy=policy,
    )
    assert quote.tariff.id == "Q-2026-1"
    assert quote.tariff.elements[0].price_components[0].price == D("0.42")
    assert quote.base_tariff_id == base.id
    assert quote.usable_at(NOW + timedelta(minutes=4, seconds=59))
    assert not quote.usable_at(NOW + timedelta(minutes=5))
    calm = make_quote(base, now=NOW, validity=timedelta(minutes=5), quote_tariff_id="Q-2")
    assert calm.tariff is base
    with pytest.raises(ValueError, match="valid for some time"):
        make_quote(base, now=NOW, validity=timedelta(0), quote_tariff_id="Q-3")


def test_the_driver_sees_every_component_per_kwh_first() -> None:
    t = PROFILE.to_tariff(tariff_id="TOU-1", country_code="NL", party_id="CFL", last_updated=NOW)
    lines = price_lines(t, datetime(2026, 3, 2, 17, 30))  # local wall-clock time
    assert [(line["type"], line["price_excl_vat"]) for line in lines] == [
        ("ENERGY", D("0.45")),  # the evening window, in force now
        ("ENERGY", D("0.30")),  # the base price (applies outside the windows)
        ("FLAT", D("0.50")),
        ("PARKING_TIME", D("0.1000")),  # 6.00/h per minute
    ]
    assert lines[0]["price_incl_vat"] == D("0.5445")
    fast = tariff(
        element(component("ENERGY", "0.59"), min_power="50"),
        element(component("ENERGY", "0.39")),
    )
    shown = price_lines(fast, datetime(2026, 3, 2, 12, 0))
    assert shown[0]["conditions"] == {"min_power": D(50)}
    assert TariffDimensionType(shown[1]["type"]) is TariffDimensionType.ENERGY


def test_policies_refuse_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DemandPolicy(threshold=D("1.0"), max_uplift=D("0.1"))
    with pytest.raises(ValueError, match="uplift"):
        DemandPolicy(threshold=D("0.5"), max_uplift=D("-0.1"))
