"""Prices before charging: ``PriceLinePublic`` (one component as the driver sees it),
``QuotePublic`` (the frozen price of one connector), ``QuoteAttachCreate`` (a session
started with a quote)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field


class PriceLinePublic(BaseModel):
    type: str = Field(description="ENERGY, TIME, FLAT or PARKING_TIME")
    unit: str = Field(description="kWh, minute or session")
    price_excl_vat: Decimal
    price_incl_vat: Decimal
    vat: Decimal | None = Field(description="Percent; null: no VAT applicable")
    conditions: dict[str, Decimal | int] = Field(
        description="When it applies (min_power in kW, max_kwh, ...); empty: always"
    )


class DemandPublic(BaseModel):
    utilisation: Decimal | None = Field(description="Site load / grid capacity, 0..1")
    occupancy: Decimal | None = Field(description="Connectors in use / all, 0..1")
    factor: Decimal = Field(description="What the energy price was multiplied by")


class QuotePublic(BaseModel):
    quote_id: uuid.UUID
    station: str
    connector: int
    created_at: datetime
    valid_until: datetime = Field(description="Start the session before this to get the price")
    currency: str
    tariff_id: str = Field(description="The tariff the price comes from")
    prices: list[PriceLinePublic] = Field(
        description="Per kWh first, then per minute, per session, parking (AFIR's order)"
    )
    alt_text: list[dict[str, str]] = Field(description="The tariff's own words, per language")
    demand: DemandPublic | None = Field(
        description="The site's demand when quoted (null: not repeated)"
    )
    tariff: dict[str, Any] = Field(description="The frozen OCPI 2.2.1 Tariff priced at start")


class QuoteAttachCreate(BaseModel):
    session_id: uuid.UUID = Field(description="The session started with this quote")
