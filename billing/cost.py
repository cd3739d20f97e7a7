"""The cost of a session under an OCPI 2.2.1 tariff: charging periods, their prices, and
totals that a billing clerk can explain line by line.

How a session is priced (the conventions of docs/billing.md, from the 2.2.1 errata):

1. The readings cut the session into intervals; an interval in which the register rises
   (or power flows) is charging (TIME), one with a flat register and zero power is
   parking (PARKING_TIME).
2. Intervals are cut again wherever an element may switch on or off: a start/end time or
   local midnight (in the location's zone, DST included: a skipped local time begins at
   the jump, a repeated hour happens twice), a min/max duration since the start, and the
   session's energy crossing a min/max kWh (the instant interpolated from the register).
   Power and current hold between readings, so their restrictions can only change there.
3. For each piece and each dimension the first element, in list order, that prices that
   dimension and whose restrictions all hold at the piece's start is used; FLAT is the
   one in force at the session start. Adjacent pieces using the same elements form one
   charging period.
4. Volumes are priced exactly (Decimal). step_size is applied once per session to the
   billable volume (priced above zero): ENERGY on its total, booked on the last billable
   period; TIME and PARKING_TIME together, on the parking total when parking is priced,
   else on the charging time. An exact multiple of the step is not rounded up.
5. The total is rounded once, half up, to the currency's minor unit; its parts
   (dimensions, then periods) are apportioned by largest remainder so that they add up
   to it exactly. min_price / max_price then clamp the totals excl. and incl. VAT
   independently; the difference is its own line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from billing.money import exponent, round_money
from billing.priced import Amount, ChargingPeriod, CostLine, PricedSession
from billing.session_pieces import Piece, moment, periods, pieces, wall
from billing.session_usage import SessionUsage
from billing.tariff_rules import Candidate, CompiledTariff, Dimension, Moment, compiled
from billing.tariffs import ReservationRestrictionType, Tariff

_ZERO = Decimal(0)
_ONE = Decimal(1)
_US = timedelta(microseconds=1)
_WH_PER_KWH = Decimal(1000)
_S_PER_H = Decimal(3600)
# Enum members as module constants: ``Dimension.ENERGY`` is a metaclass attribute look-up,
# several times slower, and these are read per line of every session.
_ENERGY, _TIME, _PARKING, _FLAT = (
    Dimension.ENERGY,
    Dimension.TIME,
    Dimension.PARKING_TIME,
    Dimension.FLAT,
)
_TIMED = (_ENERGY, _TIME, _PARKING)
_NOTHING = Amount(_ZERO, _ZERO)


# ----------------------------------------------------------------------- pricing


@dataclass(slots=True)
class _Draft:
    period: int
    dimension: Dimension
    volume_units: Decimal  # Wh or s
    billed_units: Decimal
    candidate: Candidate


def _step_up(total: Decimal, step: int) -> Decimal:
    step = max(step, 1)
    blocks = math.ceil(total / step) if total > 0 else 0
    return Decimal(blocks * step)


def _apply_steps(drafts: list[_Draft]) -> None:
    """step_size once per session on the billable volume (priced above zero); the extra
    on the last billable line of that dimension (the errata's reading): ENERGY on its
    total, TIME and PARKING_TIME together, on the parking total when parking is priced."""
    billable: dict[Dimension, list[_Draft]] = {d: [] for d in _TIMED}
    for draft in drafts:
        if draft.volume_units > 0 and draft.candidate.component.price > 0:
            billable[draft.dimension].append(draft)
    parking = billable[_PARKING]
    for lines in (billable[_ENERGY], parking or billable[_TIME]):
        if lines:
            total = sum([d.volume_units for d in lines], _ZERO)
            extra = _step_up(total, lines[-1].candidate.component.step_size) - total
            lines[-1].billed_units += extra


def _apportion(total: Decimal, exact: Sequence[Decimal], places: int) -> list[Decimal]:
    """Rounded shares of ``total`` (already rounded to ``places`` decimals) in proportion
    to the exact parts (none negative), adding up to it exactly: each part rounded down to
    the minor unit, the units left over to the parts with the largest remainders (ties:
    the earlier)."""
    if len(exact) <= 1:
        return [total] if exact else []
    shares: list[int] = []  # each part rounded down (not negative: int() rounds down)
    below: list[Decimal] = []  # minus its remainder
    for x in exact:
        scaled = x.scaleb(places)
        share = int(scaled)
        shares.append(share)
        below.append(share - scaled)
    remaining = int(total.scaleb(places)) - sum(shares)
    if remaining:
        # Sorted stably: the largest remainder first, ties in order.
        by_remainder = sorted(range(len(exact)), key=below.__getitem__)
        if remaining > 0:
            for i in by_remainder[:remaining]:
                shares[i] += 1
        else:  # the parts were rounded up past the total: take from the smallest remainders
            for i in by_remainder[::-1][:-remaining]:
                shares[i] -= 1
    unit = _MINOR_UNITS[places]
    return [unit * share for share in shares]  # Decimal(share).scaleb(-places), sooner


RESERVATION = "RESERVATION"  # the cost group of a reservation's lines (FLAT and TIME)
_GROUP_ORDER: tuple[str, ...] = (*(d.value for d in Dimension), RESERVATION)
_DIMENSIONS = {d.value: d for d in Dimension}  # a lookup, not an Enum call, per group
_MINOR_UNITS = {places: Decimal(1).scaleb(-places) for places in range(9)}


def _rounded(
    groups: list[str], excl: list[Decimal], incl: list[Decimal], currency: str
) -> tuple[dict[str, Amount], list[Amount]]:
    """The totals rounded once, apportioned to the groups (the tariff dimensions and the
    reservation) and then to their lines, so that every level adds up exactly:
    (rounded per group, rounded per line)."""
    places = exponent(currency)
    members: dict[str, list[int]] = {}
    for n, group in enumerate(groups):
        members.setdefault(group, []).append(n)
    present = [g for g in _GROUP_ORDER if g in members]
    sums_excl, sums_incl = [], []
    for g in present:
        sums_excl.append(sum(map(excl.__getitem__, members[g]), _ZERO))
        sums_incl.append(sum(map(incl.__getitem__, members[g]), _ZERO))
    group_excl = _apportion(round_money(sum(sums_excl, _ZERO), currency), sums_excl, places)
    group_incl = _apportion(round_money(sum(sums_incl, _ZERO), currency), sums_incl, places)
    by_group: dict[str, Amount] = {}
    lines: list[Amount] = [_NOTHING] * len(groups)
    for g, e, i in zip(present, group_excl, group_incl, strict=True):
        by_group[g] = Amount(e, i)
        rows = members[g]
        if len(rows) == 1:
            lines[rows[0]] = by_group[g]
            continue
        shares_excl = _apportion(e, list(map(excl.__getitem__, rows)), places)
        shares_incl = _apportion(i, list(map(incl.__getitem__, rows)), places)
        for n, line_excl, line_incl in zip(rows, shares_excl, shares_incl, strict=True):
            lines[n] = Amount(line_excl, line_incl)
    return by_group, lines


@dataclass(slots=True)
class _Line:
    """A line before rounding: its cost group, the volumes and the exact cost."""

    group: str
    dimension: Dimension
    period: int
    volume: Decimal
    billed: Decimal
    excl: Decimal
    candidate: Candidate


def _charging(
    compiled: CompiledTariff, usage: SessionUsage, first_period: int
) -> tuple[list[ChargingPeriod], list[_Line], Decimal]:
    """The charging session's periods and lines, and its parking seconds."""
    if not usage.charged:
        return [], [], _ZERO
    cut = pieces(compiled, usage)
    charging, drafts, parking_s = _drafts(compiled, usage, cut, first_period)
    _apply_steps(drafts)
    lines = []
    for d in drafts:
        per_unit = _WH_PER_KWH if d.dimension is _ENERGY else _S_PER_H
        billed = d.billed_units / per_unit
        lines.append(
            _Line(
                d.dimension,  # a StrEnum: its own group name (no .value, a descriptor call)
                d.dimension,
                d.period,
                d.volume_units / per_unit,
                billed,
                billed * d.candidate.component.price,
                d.candidate,
            )
        )
    flat = _flat(compiled, usage, cut)
    if flat is not None:
        price = flat.component.price
        lines.append(_Line(_FLAT, _FLAT, first_period, _ONE, _ONE, price, flat))
    return charging, lines, parking_s


def _drafts(
    compiled: CompiledTariff, usage: SessionUsage, cut: list[Piece], first_period: int
) -> tuple[list[ChargingPeriod], list[_Draft], Decimal]:
    """The charging periods, a draft line per period and priced dimension (volumes
    before step_size), and the parking seconds."""
    start, tariff_id = usage.start, compiled.tariff.id
    charging: list[ChargingPeriod] = []
    drafts: list[_Draft] = []
    parking_s = _ZERO
    period_start = start  # each period starts where the one before ended
    for index, period in enumerate(periods(compiled, usage, cut), start=first_period):
        first, last = period.first, period.last
        # Pieces are contiguous: a period's volumes are its ends' differences (exact).
        energy_wh = last.energy_after_wh - first.energy_before_wh
        seconds = Decimal(last.end_us - first.start_us) / 1_000_000
        if first.parking:
            parking_s += seconds
        energy_c, time_c, parking_c = period.choice
        elements: dict[Dimension, int] = {}
        if energy_c is not None:
            elements[_ENERGY] = energy_c.element_index
            drafts.append(_Draft(index, _ENERGY, energy_wh, energy_wh, energy_c))
        if time_c is not None:
            elements[_TIME] = time_c.element_index
            drafts.append(_Draft(index, _TIME, seconds, seconds, time_c))
        if parking_c is not None:
            elements[_PARKING] = parking_c.element_index
            drafts.append(_Draft(index, _PARKING, seconds, seconds, parking_c))
        period_end = start + timedelta(microseconds=last.end_us)
        charging.append(
            ChargingPeriod(
                start=period_start,
                end=period_end,
                parking=first.parking,
                energy_kwh=energy_wh / _WH_PER_KWH,
                seconds=seconds,
                tariff_id=tariff_id,
                elements=elements,
            )
        )
        period_start = period_end
    return charging, drafts, parking_s


def _flat(compiled: CompiledTariff, usage: SessionUsage, cut: list[Piece]) -> Candidate | None:
    """The FLAT element in force at the session start."""
    candidates = compiled.by_dimension[_FLAT]
    if not candidates or candidates[0].holds is None:
        return candidates[0] if candidates else None
    if cut:
        at_start = moment(cut[0], usage, compiled.needs_local)
    else:
        at_start = Moment(wall(usage.start, usage.time_zone), _ZERO, _ZERO, None, _ZERO)
    return compiled.select(_FLAT, at_start)


def _reservation(
    compiled: CompiledTariff, usage: SessionUsage
) -> tuple[list[ChargingPeriod], list[_Line]]:
    """The reservation's period and lines: its FLAT fee and its TIME, from the first
    RESERVATION element pricing each (an expired reservation: the RESERVATION_EXPIRES
    element's first, else the RESERVATION one), TIME rounded to its own step_size."""
    reservation = usage.reservation
    if reservation is None:
        return [], []
    kinds = [ReservationRestrictionType.RESERVATION]
    if reservation.expired:
        kinds.insert(0, ReservationRestrictionType.RESERVATION_EXPIRES)
    seconds = Decimal((reservation.end - reservation.start) // _US) / 1_000_000
    lines: list[_Line] = []
    elements: dict[Dimension, int] = {}
    for dimension in (Dimension.TIME, Dimension.FLAT):
        candidate = next(
            (c for kind in kinds if (c := compiled.reservation.get((kind, dimension)))), None
        )
        if candidate is None:
            continue
        elements[dimension] = candidate.element_index
        component = candidate.component
        if dimension is Dimension.FLAT:
            lines.append(_Line(RESERVATION, dimension, 0, _ONE, _ONE, component.price, candidate))
            continue
        billed_s = _step_up(seconds, component.step_size) if component.price > 0 else seconds
        billed = billed_s / _S_PER_H
        lines.append(
            _Line(
                RESERVATION,
                dimension,
                0,
                seconds / _S_PER_H,
                billed,
                billed * component.price,
                candidate,
            )
        )
    period = ChargingPeriod(
        start=reservation.start,
        end=reservation.end,
        parking=False,
        energy_kwh=_ZERO,
        seconds=seconds,
        tariff_id=compiled.tariff.id,
        elements=elements,
        reservation=True,
    )
    return [period], lines


def price_session(tariff: Tariff, usage: SessionUsage) -> PricedSession:
    """The cost of ``usage`` under ``tariff`` (checked input: :func:`parse_usage`,
    :func:`billing.tariffs.parse_tariff`)."""
    rules = compiled(tariff)
    currency = tariff.currency
    reserved, reservation_lines = _reservation(rules, usage)
    periods, charging_lines, parking_s = _charging(rules, usage, len(reserved))
    exact = [*reservation_lines, *charging_lines]
    groups: list[str] = []
    exact_excl: list[Decimal] = []
    exact_incl: list[Decimal] = []
    for line in exact:
        groups.append(line.group)
        exact_excl.append(line.excl)
        factor = line.candidate.vat_factor
        exact_incl.append(line.excl if factor is None else line.excl * factor)
    by_group, line_costs = _rounded(groups, exact_excl, exact_incl, currency)
    total_excl = sum([a.excl_vat for a in by_group.values()], _ZERO)
    total_incl = sum([a.incl_vat for a in by_group.values()], _ZERO)
    lines = tuple(
        [
            CostLine(
                period=line.period,
                dimension=line.dimension,
                volume=line.volume,
                billed_volume=line.billed,
                unit_price=line.candidate.component.price,
                vat=line.candidate.component.vat,
                element_index=line.candidate.element_index,
                cost=cost,
                reservation=line.group == RESERVATION,
            )
            for line, cost in zip(exact, line_costs, strict=True)
        ]
    )
    exact_total = Amount(sum(exact_excl, _ZERO), sum(exact_incl, _ZERO))
    clamped = _clamp(tariff, Amount(total_excl, total_incl), exact_total)
    adjustment = Amount(clamped.excl_vat - total_excl, clamped.incl_vat - total_incl)
    return PricedSession(
        tariff=tariff,
        start=usage.start,
        stop=usage.stop,
        currency=currency,
        periods=(*reserved, *periods),
        lines=lines,
        total_energy_kwh=Decimal(usage.energy_wh) / _WH_PER_KWH,
        total_time_h=Decimal((usage.stop - usage.start) // _US) / 1_000_000 / _S_PER_H
        if usage.charged
        else _ZERO,
        total_parking_time_h=parking_s / _S_PER_H,
        by_dimension={_DIMENSIONS[g]: a for g, a in by_group.items() if g != RESERVATION},
        reservation_cost=by_group.get(RESERVATION),
        price_limit_adjustment=adjustment,
        total_cost=clamped,
        exact_total=exact_total,
    )


def _clamp(tariff: Tariff, total: Amount, exact: Amount) -> Amount:
    """min_price / max_price on the totals excl. and incl. VAT, each on its own, as
    OCPI says both apply; a limit given only excl. VAT moves the incl. total with it, at
    the session's own VAT ratio."""
    low, high = tariff.min_price, tariff.max_price
    if low is None and high is None:
        return total
    currency = tariff.currency
    excl, incl = total.excl_vat, total.incl_vat
    ratio = exact.incl_vat / exact.excl_vat if exact.excl_vat > 0 else Decimal(1)
    new_excl, new_incl = excl, incl
    if low is not None:
        if excl < low.excl_vat:
            new_excl = round_money(low.excl_vat, currency)
        if low.incl_vat is not None:
            new_incl = max(new_incl, round_money(low.incl_vat, currency))
        elif excl < low.excl_vat:
            new_incl = max(new_incl, round_money(low.excl_vat * ratio, currency))
    if high is not None:
        if excl > high.excl_vat:
            new_excl = round_money(high.excl_vat, currency)
        if high.incl_vat is not None:
            new_incl = min(new_incl, round_money(high.incl_vat, currency))
        elif excl > high.excl_vat:
            new_incl = min(new_incl, round_money(high.excl_vat * ratio, currency))
    return Amount(new_excl, new_incl)
