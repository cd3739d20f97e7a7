"""Dynamic prices: time-of-use profiles an operator writes in a few lines, a bounded
demand adjustment from the site's live load or occupancy, and the quote that freezes the
result for one driver before charging starts.

Both end in an ordinary OCPI 2.2.1 Tariff, so the cost calculation, the CDR and any
roaming partner see nothing special: a time-of-use profile becomes elements with time
and day restrictions; a demand adjustment multiplies the ENERGY prices of the tariff in
force, within the operator's bounds, into a new tariff that the quote stores. A session
started with a quote is priced with the quoted tariff, whatever happens to demand or to
the operator's tariff afterwards (prices are never changed retroactively).

>>> policy = DemandPolicy(threshold=Decimal("0.7"), max_uplift=Decimal("0.30"))
>>> policy.factor(DemandSnapshot(utilisation=Decimal("0.85"), occupancy=Decimal("0.5")))
Decimal('1.15')
>>> policy.factor(DemandSnapshot(utilisation=Decimal("0.5"), occupancy=Decimal("0.2")))
Decimal('1')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.tariff_rules import elements_in_force
from billing.tariffs import DayOfWeek, Tariff, TariffDimensionType, parse_tariff

_PRICE_PLACES = Decimal("0.0001")  # OCPI numbers carry 4 decimals


# ----------------------------------------------------------------------- time of use


@dataclass(frozen=True)
class TouWindow:
    """An energy price from ``start`` to ``end`` (local "HH:MM"; an end before the start
    wraps past midnight) on ``days`` (all days when empty)."""

    start: str
    end: str
    energy_price: Decimal
    days: tuple[DayOfWeek, ...] = ()


@dataclass(frozen=True)
class TouProfile:
    """A time-of-use tariff: windows in order of precedence, then the base price; an
    optional start fee, a charging-time price, a parking price; one VAT rate."""

    currency: str
    base_energy_price: Decimal
    windows: tuple[TouWindow, ...] = ()
    vat: Decimal | None = None
    start_fee: Decimal | None = None
    time_price_per_hour: Decimal | None = None
    parking_price_per_hour: Decimal | None = None
    parking_step_s: int = 60

    def to_tariff(
        self, *, tariff_id: str, country_code: str, party_id: str, last_updated: datetime
    ) -> Tariff:
        """The profile as an OCPI 2.2.1 Tariff (validated like any other)."""

        def component(kind: str, price: Decimal, step: int = 1) -> dict[str, Any]:
            out: dict[str, Any] = {"type": kind, "price": price, "step_size": step}
            if self.vat is not None:
                out["vat"] = self.vat
            return out

        elements: list[dict[str, Any]] = []
        if self.start_fee is not None:
            elements.append({"price_components": [component("FLAT", self.start_fee)]})
        for window in self.windows:
            restrictions: dict[str, Any] = {"start_time": window.start, "end_time": window.end}
            if window.days:
                restrictions["day_of_week"] = [d.value for d in window.days]
            elements.append(
                {
                    "price_components": [component("ENERGY", window.energy_price)],
                    "restrictions": restrictions,
                }
            )
        base = [component("ENERGY", self.base_energy_price)]
        if self.time_price_per_hour is not None:
            base.append(component("TIME", self.time_price_per_hour))
        if self.parking_price_per_hour is not None:
            base.append(component("PARKING_TIME", self.parking_price_per_hour, self.parking_step_s))
        elements.append({"price_components": base})
        return parse_tariff(
            {
                "country_code": country_code,
                "party_id": party_id,
                "id": tariff_id,
                "currency": self.currency,
                "elements": elements,
                "last_updated": last_updated,
            }
        )


# ----------------------------------------------------------------------- demand


@dataclass(frozen=True)
class DemandSnapshot:
    """The site's demand when the quote is made: live load / grid capacity, and occupied
    connectors / all connectors (each 0..1; None when unknown)."""

    utilisation: Decimal | None
    occupancy: Decimal | None


@dataclass(frozen=True)
class DemandPolicy:
    """Above ``threshold`` (of utilisation or occupancy, whichever is higher) the energy
    price rises linearly, reaching ``1 + max_uplift`` times the tariff's at full demand;
    never below the tariff's price and never above ``max_energy_price`` when set."""

    threshold: Decimal
    max_uplift: Decimal
    max_energy_price: Decimal | None = None

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.threshold < Decimal(1):
            raise ValueError("the demand threshold is a share in [0, 1)")
        if not Decimal(0) <= self.max_uplift <= Decimal(5):
            raise ValueError("the uplift is a share between 0 and 5 (500 %)")

    def factor(self, demand: DemandSnapshot) -> Decimal:
        levels = [v for v in (demand.utilisation, demand.occupancy) if v is not None]
        if not levels:
            return Decimal(1)
        level = min(max(max(levels), Decimal(0)), Decimal(1))
        if level <= self.threshold:
            return Decimal(1)
        over = (level - self.threshold) / (Decimal(1) - self.threshold)
        return (Decimal(1) + over * self.max_uplift).quantize(_PRICE_PLACES).normalize()


def adjusted(tariff: Tariff, factor: Decimal, policy: DemandPolicy, *, tariff_id: str) -> Tariff:
    """``tariff`` with every ENERGY price multiplied by ``factor`` (capped by the policy),
    under a new id; everything else as it was."""
    body = tariff.model_dump(exclude_none=True)
    for element in body["elements"]:
        for component in element["price_components"]:
            if component["type"] is TariffDimensionType.ENERGY:
                price = (component["price"] * factor).quantize(_PRICE_PLACES, ROUND_HALF_UP)
                if policy.max_energy_price is not None:
                    price = max(component["price"], min(price, policy.max_energy_price))
                component["price"] = price
    body["id"] = tariff_id
    return parse_tariff(body)


# ----------------------------------------------------------------------- quotes


@dataclass(frozen=True)
class Quote:
    """What the driver is shown and the session will be priced with."""

    tariff: Tariff
    base_tariff_id: str
    factor: Decimal
    demand: DemandSnapshot | None
    created_at: datetime
    valid_until: datetime

    def usable_at(self, instant: datetime) -> bool:
        return self.created_at <= instant < self.valid_until


def make_quote(
    tariff: Tariff,
    *,
    now: datetime,
    validity: timedelta,
    quote_tariff_id: str,
    demand: DemandSnapshot | None = None,
    policy: DemandPolicy | None = None,
) -> Quote:
    """Freeze the price for one driver: the tariff in force, adjusted for demand when a
    policy applies, valid from ``now`` for ``validity``."""
    if validity <= timedelta(0):
        raise ValueError("a quote must be valid for some time")
    factor = policy.factor(demand) if policy is not None and demand is not None else Decimal(1)
    quoted = (
        adjusted(tariff, factor, policy, tariff_id=quote_tariff_id)
        if policy is not None and factor != 1
        else tariff
    )
    return Quote(quoted, tariff.id, factor, demand, now, now + validity)


# ----------------------------------------------------------------------- what the driver sees

# AFIR Art. 5: the price per kWh, per minute, per session and any other component, in
# that order, before the session starts.
_DISPLAY_ORDER = (
    TariffDimensionType.ENERGY,
    TariffDimensionType.TIME,
    TariffDimensionType.FLAT,
    TariffDimensionType.PARKING_TIME,
)
_UNITS = {
    TariffDimensionType.ENERGY: "kWh",
    TariffDimensionType.TIME: "minute",
    TariffDimensionType.FLAT: "session",
    TariffDimensionType.PARKING_TIME: "minute",
}
_CONDITIONS = ("min_kwh", "max_kwh", "min_power", "max_power", "min_current", "max_current",
               "min_duration", "max_duration")  # fmt: skip


def price_lines(tariff: Tariff, local_now: datetime) -> list[dict[str, Any]]:
    """Every price component in force at the location's wall-clock time ``local_now``,
    per kWh first, then per minute, per session and parking per minute, each with its
    price excl. and incl. VAT and the conditions under which it applies (e.g. "from 50
    kW"). Per-hour OCPI prices are shown per minute, unrounded to 4 decimals."""
    lines: list[dict[str, Any]] = []
    for index, element in elements_in_force(tariff, local_now):
        conditions = {}
        if element.restrictions is not None:
            conditions = {
                name: getattr(element.restrictions, name)
                for name in _CONDITIONS
                if getattr(element.restrictions, name) is not None
            }
        for component in element.price_components:
            price = component.price
            if component.type in (TariffDimensionType.TIME, TariffDimensionType.PARKING_TIME):
                price = (price / 60).quantize(_PRICE_PLACES, ROUND_HALF_UP)
            vat = component.vat
            lines.append(
                {
                    "type": component.type.value,
                    "unit": _UNITS[component.type],
                    "price_excl_vat": price,
                    "price_incl_vat": price
                    if vat is None
                    else (price * (1 + vat / 100)).quantize(_PRICE_PLACES, ROUND_HALF_UP),
                    "vat": vat,
                    "element": index,
                    "conditions": conditions,
                }
            )
    lines.sort(key=lambda line: _DISPLAY_ORDER.index(TariffDimensionType(line["type"])))
    return lines
