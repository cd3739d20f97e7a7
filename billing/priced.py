"""A priced session (:func:`billing.cost.price_session`): its charging periods, its cost
lines and totals, and the OCPI 2.2.1 CDR fields they make (:meth:`PricedSession.to_cdr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.tariff_rules import Dimension
from billing.tariffs import Tariff

_ZERO = Decimal(0)
_S_PER_H = Decimal(3600)
_VOLUME_PLACES = Decimal("0.0001")  # OCPI numbers carry 4 decimals


@dataclass(frozen=True, slots=True)
class Amount:
    excl_vat: Decimal
    incl_vat: Decimal

    def to_json(self) -> dict[str, Decimal]:
        return {"excl_vat": self.excl_vat, "incl_vat": self.incl_vat}


@dataclass(frozen=True, slots=True)
class CostLine:
    """One priced dimension of one charging period (or the session's FLAT fee)."""

    period: int  # index into PricedSession.periods (FLAT: 0)
    dimension: Dimension
    volume: Decimal  # measured: kWh, h, or 1 for FLAT
    billed_volume: Decimal  # after step_size (the rounding is booked on the last period)
    unit_price: Decimal  # excl. VAT
    vat: Decimal | None  # percent; None: no VAT applicable
    element_index: int
    cost: Amount  # rounded share of the total (lines add up to the totals exactly)
    reservation: bool = False  # a line of the reservation before the session


@dataclass(frozen=True, slots=True)
class ChargingPeriod:
    start: datetime
    end: datetime
    parking: bool
    energy_kwh: Decimal
    seconds: Decimal
    tariff_id: str
    elements: dict[Dimension, int]
    reservation: bool = False  # the reservation before the session (RESERVATION_TIME)

    @property
    def hours(self) -> Decimal:
        return self.seconds / _S_PER_H


@dataclass(frozen=True)
class PricedSession:
    tariff: Tariff
    start: datetime
    stop: datetime
    currency: str
    periods: tuple[ChargingPeriod, ...]
    lines: tuple[CostLine, ...]
    total_energy_kwh: Decimal
    total_time_h: Decimal
    total_parking_time_h: Decimal
    by_dimension: dict[Dimension, Amount]  # rounded; with the reservation, adding up to
    reservation_cost: Amount | None  # the unclamped total
    price_limit_adjustment: Amount  # min_price / max_price
    total_cost: Amount
    exact_total: Amount = field(repr=False)  # before rounding, for the bench and tests

    def to_cdr(self) -> dict[str, Any]:
        """The OCPI 2.2.1 CDR fields this calculation determines (numbers as Decimal),
        with chargeflow's per-line breakdown under ``cost_breakdown``."""
        zero = Amount(_ZERO, _ZERO)
        flat = self.by_dimension.get(Dimension.FLAT)
        cdr: dict[str, Any] = {
            "start_date_time": ocpi_datetime(self.start),
            "end_date_time": ocpi_datetime(self.stop),
            "currency": self.currency,
            "tariffs": [self.tariff.model_dump(exclude_none=True)],
            "charging_periods": [_period_json(p) for p in self.periods],
            "total_cost": self.total_cost.to_json(),
            "total_fixed_cost": (flat or zero).to_json(),
            "total_energy": _volume(self.total_energy_kwh),
            "total_energy_cost": self.by_dimension.get(Dimension.ENERGY, zero).to_json(),
            "total_time": _volume(self.total_time_h),
            "total_time_cost": self.by_dimension.get(Dimension.TIME, zero).to_json(),
            "total_parking_time": _volume(self.total_parking_time_h),
            "total_parking_cost": self.by_dimension.get(Dimension.PARKING_TIME, zero).to_json(),
            "total_reservation_cost": (self.reservation_cost or zero).to_json(),
            "cost_breakdown": [_line_json(line, self.periods) for line in self.lines],
        }
        if self.price_limit_adjustment != zero:
            cdr["price_limit_adjustment"] = self.price_limit_adjustment.to_json()
        return cdr


def ocpi_datetime(instant: datetime) -> str:
    """UTC with ``Z``, as OCPI writes DateTime (microseconds only where a cut has them)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _volume(value: Decimal) -> Decimal:
    """A volume as OCPI writes numbers: 4 decimals at most, no trailing zeros."""
    rounded = value.quantize(_VOLUME_PLACES, rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return rounded.quantize(Decimal(1))
    return rounded.normalize()


def _period_json(period: ChargingPeriod) -> dict[str, Any]:
    dimensions: list[dict[str, Any]] = []
    if period.reservation:
        return {
            "start_date_time": ocpi_datetime(period.start),
            "dimensions": [{"type": "RESERVATION_TIME", "volume": _volume(period.hours)}],
            "tariff_id": period.tariff_id,
        }
    if not period.parking:
        dimensions.append({"type": "ENERGY", "volume": _volume(period.energy_kwh)})
    dimensions.append(
        {"type": "PARKING_TIME" if period.parking else "TIME", "volume": _volume(period.hours)}
    )
    return {
        "start_date_time": ocpi_datetime(period.start),
        "dimensions": dimensions,
        "tariff_id": period.tariff_id,
    }


def _line_json(line: CostLine, periods: Sequence[ChargingPeriod]) -> dict[str, Any]:
    return {
        "start_date_time": ocpi_datetime(periods[line.period].start) if periods else None,
        "type": line.dimension.value,
        "volume": _volume(line.volume),
        "billed_volume": _volume(line.billed_volume),
        "price": line.unit_price,
        "vat": line.vat,
        "element": line.element_index,
        "cost": line.cost.to_json(),
    }
