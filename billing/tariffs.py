"""The OCPI 2.2.1 Tariff object (module Tariffs), validated: a tariff that passes here is
one the cost calculation (:mod:`billing.cost`) can price.

Field names, types and enumerations are OCPI's. Where OCPI is loose the model is strict
only where a mistake would change a price: unknown keys inside elements, price
components and restrictions are rejected (a misspelt ``restrictions`` would silently make
an element unrestricted); unknown top-level keys are ignored, as OCPI asks receivers to.

>>> tariff = parse_tariff({
...     "country_code": "DE", "party_id": "ALL", "id": "12", "currency": "EUR",
...     "elements": [{"price_components": [
...         {"type": "ENERGY", "price": "0.25", "vat": 19, "step_size": 1}]}],
...     "last_updated": "2018-12-17T11:36:01Z"})
>>> tariff.elements[0].price_components[0].price
Decimal('0.25')
>>> parse_tariff({"id": "x"})
Traceback (most recent call last):
...
billing.tariffs.TariffError: invalid OCPI 2.2.1 Tariff: country_code: Field required; ...
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from billing.money import CurrencyError, check_currency


class TariffError(ValueError):
    """Not a valid OCPI 2.2.1 Tariff; the message names every offending field."""


class TariffDimensionType(StrEnum):
    ENERGY = "ENERGY"  # per kWh, step_size in Wh
    FLAT = "FLAT"  # once per session
    PARKING_TIME = "PARKING_TIME"  # per hour not charging, step_size in s
    TIME = "TIME"  # per hour charging, step_size in s


class DayOfWeek(StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


WEEKDAYS = tuple(DayOfWeek)  # in datetime.weekday() order


class ReservationRestrictionType(StrEnum):
    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


class TariffType(StrEnum):
    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _clock(value: str) -> str:
    if not _HH_MM.match(value):
        raise ValueError(f"must be a 24 h time HH:MM (00:00 to 23:59), got {value!r}")
    return value


def _local_date(value: str) -> str:
    if not _DATE.match(value):
        raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}")
    date.fromisoformat(value)  # a real calendar date
    return value


def _currency(value: str) -> str:
    try:
        checked = check_currency(value)
    except CurrencyError as exc:
        raise ValueError(str(exc)) from None
    if checked != value:
        raise ValueError(f"must be an upper-case ISO 4217 code, got {value!r}")
    return value


Clock = Annotated[str, AfterValidator(_clock)]
LocalDate = Annotated[str, AfterValidator(_local_date)]
# Prices and limits: OCPI bounds none; far beyond any real one they only risk overflow.
NonNegative = Annotated[Decimal, Field(ge=0, lt=10**9, allow_inf_nan=False)]
Currency = Annotated[str, AfterValidator(_currency)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class PriceComponent(_Strict):
    type: TariffDimensionType
    price: NonNegative  # per unit, excl. VAT
    vat: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    # Units billed in blocks of this (Wh for ENERGY, s for TIME/PARKING_TIME); 0 is
    # read as 1, as some senders write it.
    step_size: Annotated[int, Field(ge=0, strict=True)]


class TariffRestrictions(_Strict):
    start_time: Clock | None = None
    end_time: Clock | None = None
    start_date: LocalDate | None = None
    end_date: LocalDate | None = None
    min_kwh: NonNegative | None = None
    max_kwh: NonNegative | None = None
    min_current: NonNegative | None = None
    max_current: NonNegative | None = None
    min_power: NonNegative | None = None
    max_power: NonNegative | None = None
    min_duration: Annotated[int, Field(ge=0, strict=True)] | None = None
    max_duration: Annotated[int, Field(ge=0, strict=True)] | None = None
    day_of_week: list[DayOfWeek] | None = None
    reservation: ReservationRestrictionType | None = None


class TariffElement(_Strict):
    price_components: Annotated[list[PriceComponent], Field(min_length=1)]
    restrictions: TariffRestrictions | None = None

    @model_validator(mode="after")
    def _reservation_dimensions(self) -> TariffElement:
        if self.restrictions is not None and self.restrictions.reservation is not None:
            bad = [
                c.type.value
                for c in self.price_components
                if c.type not in (TariffDimensionType.FLAT, TariffDimensionType.TIME)
            ]
            if bad:
                raise ValueError(
                    f"an element restricted to a reservation may only price FLAT and TIME, "
                    f"not {', '.join(bad)}"
                )
        return self


class Price(_Strict):
    excl_vat: NonNegative
    incl_vat: NonNegative | None = None


class DisplayText(_Strict):
    language: Annotated[str, Field(min_length=2, max_length=2)]
    text: Annotated[str, Field(max_length=512)]


class Tariff(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    country_code: Annotated[str, Field(min_length=2, max_length=2)]
    party_id: Annotated[str, Field(min_length=3, max_length=3)]
    id: Annotated[str, Field(min_length=1, max_length=36)]
    currency: Currency
    type: TariffType | None = None
    tariff_alt_text: list[DisplayText] = Field(default_factory=list)
    tariff_alt_url: Annotated[str, Field(max_length=255)] | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    elements: Annotated[list[TariffElement], Field(min_length=1)]
    energy_mix: dict[str, Any] | None = None
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    last_updated: datetime

    @field_validator("start_date_time", "end_date_time", "last_updated")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            return value.replace(tzinfo=UTC)  # OCPI DateTimes are UTC
        return value

    @model_validator(mode="after")
    def _ranges(self) -> Tariff:
        if (
            self.start_date_time is not None
            and self.end_date_time is not None
            and self.end_date_time <= self.start_date_time
        ):
            raise ValueError("end_date_time must be after start_date_time")
        low, high = self.min_price, self.max_price
        if low is not None and high is not None and low.excl_vat > high.excl_vat:
            raise ValueError("min_price.excl_vat is above max_price.excl_vat")
        return self

    def valid_at(self, instant: datetime) -> bool:
        """Whether the tariff is in force at ``instant`` (start inclusive, end exclusive)."""
        if self.start_date_time is not None and instant < self.start_date_time:
            return False
        return self.end_date_time is None or instant < self.end_date_time


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "tariff"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_tariff(data: object) -> Tariff:
    """``data`` (a decoded JSON object) as a :class:`Tariff`, or :class:`TariffError`
    naming each invalid field. Numbers may be JSON numbers or strings; decode JSON with
    ``parse_float=Decimal`` so prices stay exact."""
    if not isinstance(data, dict):
        raise TariffError(
            f"invalid OCPI 2.2.1 Tariff: expected a JSON object, got {type(data).__name__}"
        )
    try:
        return Tariff.model_validate(data)
    except ValidationError as exc:
        raise TariffError(f"invalid OCPI 2.2.1 Tariff: {_describe(exc)}") from None


def tariff_in_force(tariffs: list[Tariff], session_start: datetime) -> Tariff | None:
    """The tariff a session is priced with: the first of ``tariffs`` valid at its start
    (the driver accepted the tariff in force when charging began; a later change does
    not reach a running session)."""
    return next((t for t in tariffs if t.valid_at(session_start)), None)
