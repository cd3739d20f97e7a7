"""Properties of the cost calculation over generated tariffs and sessions (hypothesis):
the breakdown adds up to the totals, energy-only costs grow with energy, step_size
rounds as specified, price limits clamp, and periods account for every Wh and second."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from billing.cost import price_session
from billing.money import round_money
from billing.tariffs import TariffDimensionType as Dim
from tests.support.billing import Run, component, element, session, tariff, utc

D = Decimal
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Starts across 2026, DST change days in Europe/Amsterdam included.
starts = st.one_of(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 30)),
    st.sampled_from([datetime(2026, 3, 28, 22, 0), datetime(2026, 10, 24, 21, 30)]),
).map(lambda naive: utc(naive.year, naive.month, naive.day, naive.hour, naive.minute))
clocks = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))
prices = st.decimals(min_value=0, max_value=3, places=4)
vats = st.one_of(st.none(), st.sampled_from([0, 7, 19, 21]))
runs = st.lists(
    st.builds(
        Run,
        minutes=st.integers(1, 240),
        power_w=st.one_of(st.just(0), st.integers(1000, 150_000)),
    ),
    min_size=1,
    max_size=8,
)


@st.composite
def restrictions(draw: st.DrawFn, *, quantities: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["start_time"] = draw(clocks)
        out["end_time"] = draw(clocks)
    if draw(st.booleans()):
        days = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
        out["day_of_week"] = draw(st.lists(st.sampled_from(days), min_size=1, unique=True))
    if quantities and draw(st.booleans()):
        out["max_kwh"] = str(draw(st.integers(1, 60)))
    if quantities and draw(st.booleans()):
        out["min_power"] = str(draw(st.integers(1, 100)))
    if quantities and draw(st.booleans()):
        out["max_duration"] = draw(st.integers(60, 6 * 3600))
    return out


@st.composite
def any_tariff(draw: st.DrawFn) -> dict[str, Any]:
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        kinds = draw(
            st.lists(
                st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )
        components = [
            component(
                k,
                draw(prices),
                vat=draw(vats),
                step=draw(st.sampled_from([1, 1, 60, 300, 500, 1000])),
            )
            for k in kinds
        ]
        elements.append(element(*components, **draw(restrictions())))
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["min_price"] = {"excl_vat": str(draw(st.integers(0, 5)))}
    if draw(st.booleans()):
        fields["max_price"] = {"excl_vat": str(draw(st.integers(5, 100)))}
    return {"elements": elements, "fields": fields}


def _build(spec: dict[str, Any]) -> Any:
    return tariff(*spec["elements"], **spec["fields"])


@PROFILE
@given(any_tariff(), starts, runs)
def test_the_breakdown_adds_up_to_the_totals_exactly(
    spec: dict[str, Any], start: datetime, work: list[Run]
) -> None:
    priced = price_session(_build(spec), session(start, *work))
    for dimension, amount in priced.by_dimension.items():
        lines = [line.cost for line in priced.lines if line.dimension is dimension]
        assert sum((c.excl_vat for c in lines), D(0)) == amount.excl_vat
        assert sum((c.incl_vat for c in lines), D(0)) == amount.incl_vat
    unclamped_excl = sum((a.excl_vat for a in priced.by_dimension.values()), D(0))
    unclamped_incl = sum((a.incl_vat for a in priced.by_dimension.values()), D(0))
    assert unclamped_excl == round_money(priced.exact_total.excl_vat, "EUR")
    assert unclamped_incl == round_money(priced.exact_total.incl_vat, "EUR")
    assert priced.total_cost.excl_vat == unclamped_excl + priced.price_limit_adjustment.excl_vat
    assert priced.total_cost.incl_vat == unclamped_incl + priced.price_limit_adjustment.incl_vat
    assert all(c.cost.excl_vat >= 0 and c.cost.incl_vat >= 0 for c in priced.lines)


@PROFILE
@given(any_tariff(), starts, runs)
def test_periods_account_for_every_wh_and_second(
    spec: dict[str, Any], start: datetime, work: list[Run]
) -> None:
    usage = session(start, *work)
    priced = price_session(_build(spec), usage)
    assert sum((p.energy_kwh for p in priced.periods), D(0)) == D(usage.energy_wh) / 1000
    seconds = sum((p.seconds for p in priced.periods), D(0))
    assert seconds == D((usage.stop - usage.start).total_seconds())
    assert priced.periods[0].start == usage.start
    for before, after in zip(priced.periods, priced.periods[1:], strict=False):
        assert before.end == after.start


@PROFILE
@given(any_tariff(), starts, runs)
def test_price_limits_clamp_the_total(
    spec: dict[str, Any], start: datetime, work: list[Run]
) -> None:
    t = _build(spec)
    priced = price_session(t, session(start, *work))
    if t.min_price is not None:
        assert priced.total_cost.excl_vat >= t.min_price.excl_vat
    if t.max_price is not None:
        assert priced.total_cost.excl_vat <= t.max_price.excl_vat
    if priced.price_limit_adjustment.excl_vat == 0:
        assert priced.total_cost.excl_vat == round_money(priced.exact_total.excl_vat, "EUR")


@st.composite
def energy_only_tariff(draw: st.DrawFn) -> dict[str, Any]:
    """Energy-only tariffs the errata's step_size rule keeps monotonic in energy: several
    elements without rounding (step 1), or one element with any step. Several prices
    *and* a step are not: see the example after the property."""
    count = draw(st.integers(1, 3))
    steps = st.sampled_from([1, 500]) if count == 1 else st.just(1)
    elements = [
        element(
            component("ENERGY", draw(prices), vat=draw(vats), step=draw(steps)),
            **draw(restrictions(quantities=False)),
        )
        for _ in range(count)
    ]
    return {"elements": elements, "fields": {}}


@PROFILE
@given(energy_only_tariff(), starts, runs, st.data())
def test_energy_only_cost_never_falls_when_a_run_delivers_more(
    spec: dict[str, Any], start: datetime, work: list[Run], data: st.DataObject
) -> None:
    t = _build(spec)
    index = data.draw(st.integers(0, len(work) - 1))
    extra = data.draw(st.integers(1, 50_000))
    base = work[index]
    more = list(work)
    delivered = round(base.power_w * base.minutes / 60)
    more[index] = Run(base.minutes, base.power_w or 1000, delivered + extra)
    less_cost = price_session(t, session(start, *work)).total_cost
    more_cost = price_session(t, session(start, *more)).total_cost
    assert more_cost.excl_vat >= less_cost.excl_vat
    assert more_cost.incl_vat >= less_cost.incl_vat


def test_more_energy_at_a_cheaper_element_can_cost_less_under_a_step() -> None:
    """Why the property above excludes several prices with a step: the errata round the
    session's total energy once, on its last period's price (step 4 of the
    calculation in docs/billing.md). Energy added in a cheaper period fills the step that the dearer
    last period was billed for, so the bill falls. 23:00-00:00 at 0.10/kWh, then
    00:00-00:30 at 0.50/kWh with step 500 Wh."""
    t = tariff(
        element(component("ENERGY", "0.10", vat=None), start_time="01:00", end_time="00:00"),
        element(component("ENERGY", "0.50", vat=None, step=500)),
    )
    start = utc(2026, 1, 14, 22)  # 23:00 in Amsterdam

    def cost(cheap_wh: int) -> Decimal:
        usage = session(start, Run(60, cheap_wh, cheap_wh), Run(30, 200, 100))
        return price_session(t, usage).total_cost.excl_vat

    assert cost(100) == D("0.21")  # 0.1 kWh x 0.10 + (0.1 + 0.3 step-up) kWh x 0.50
    assert cost(400) == D("0.09")  # 0.4 kWh x 0.10 + 0.1 kWh x 0.50: the step is filled


@PROFILE
@given(
    st.integers(1, 2000),
    st.lists(st.integers(1, 30_000), min_size=1, max_size=6),
    prices,
    starts,
)
def test_energy_step_size_bills_the_smallest_multiple_at_or_above_the_total(
    step: int, energies: list[int], price: Decimal, start: datetime
) -> None:
    t = tariff(element(component("ENERGY", price, vat=None, step=step)))
    priced = price_session(t, session(start, *(Run(30, e * 2, energy_wh=e) for e in energies)))
    total_wh = sum(energies)
    billed_wh = sum((line.billed_volume for line in priced.lines), D(0)) * 1000
    expected_wh = math.ceil(total_wh / step) * step if price > 0 else total_wh
    assert billed_wh == expected_wh
    assert priced.total_cost.excl_vat == round_money(D(expected_wh) / 1000 * price, "EUR")


@PROFILE
@given(st.integers(0, 23), st.integers(0, 59), st.integers(1, 180))
def test_a_time_window_holds_from_its_start_inclusive_to_its_end_exclusive(
    hour: int, minute: int, minutes: int
) -> None:
    assume((hour, minute) != (0, 0))  # 00:00 to 00:00 is the whole day
    window_start = f"{hour:02d}:{minute:02d}"
    t = tariff(
        element(component("TIME", "60.00", vat=None), start_time=window_start, end_time="00:00"),
        element(component("TIME", "0", vat=None)),
    )
    # Local midnight on a winter Monday is 23:00 UTC the day before.
    local_midnight = utc(2026, 3, 1, 23, 0)
    at_window = local_midnight + timedelta(hours=hour, minutes=minute)
    priced = price_session(t, session(at_window, Run(minutes, 7000)))
    # 60/h = 1 per minute, from the window's start until local midnight.
    until_midnight = (local_midnight + timedelta(days=1) - at_window).total_seconds() / 60
    assert priced.total_cost.excl_vat == D(min(minutes, int(until_midnight)))
    before = price_session(t, session(at_window - timedelta(minutes=1), Run(1, 7000)))
    assert before.total_cost.excl_vat == D(0)
    assert priced.by_dimension[Dim.TIME].excl_vat == priced.total_cost.excl_vat
