"""Charging sessions: ``SessionBase`` (what a session says), ``SessionPublic`` (with its
id and duration), ``SessionsPage`` (one page of a listing), ``SessionCostPublic`` (its
running or final cost)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.params import CURSOR_PATTERN
from bus.sessions import ClosedBy, EnergySource, Quality


class SessionBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    status: Literal["active", "closed"]
    started_at: datetime
    stopped_at: datetime | None
    meter_start_wh: int | None = Field(
        description="The station's register at the start (Wh); null without any register"
    )
    meter_stop_wh: int | None
    energy_wh: int | None = Field(
        description="Billed energy in Wh (see energy_source); null when quality is missing"
    )
    energy_source: EnergySource | None = Field(
        description="station_register | smart_meter (billing meter) | power_integration; "
        "null without a figure"
    )
    quality: Quality = Field(
        description="exact: registers agree; corrected: adjusted or doubtful (see "
        "quality_reasons); estimated: integrated from power; missing: no energy figure at "
        "all (energy_wh null). Bill only exact."
    )
    quality_reasons: list[str]
    stop_reason: str | None
    sample_count: int
    closed_by: ClosedBy | None = Field(
        default=None,
        description="How the session closed (reconciled: the sessions flow "
        "restarted without its state; see quality_reasons); null while active",
    )
    station_energy_wh: int | None = Field(
        default=None, description="The station register's figure (Wh)"
    )
    smart_meter_energy_wh: int | None = Field(
        default=None, description="The smart meter's figure (Wh), billing or cross-check"
    )
    smart_meter_id: str | None = None
    ocpp_version: str | None = None


class SessionPublic(SessionBase):
    session_id: uuid.UUID
    duration_s: float | None = Field(description="stopped_at - started_at; null while active")
    remote_start_command_id: uuid.UUID | None = Field(
        default=None,
        description="The remote start command that produced this session's transaction "
        "(`GET /v1/commands/{id}`); null for a start at the station",
    )


class SessionsPage(BaseModel):
    items: list[SessionPublic]
    next_cursor: str | None = Field(
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` to get the next page; null on the last page",
    )


class MoneyPublic(BaseModel):
    excl_vat: Decimal = Field(description="Exact decimal, in the currency's minor unit")
    incl_vat: Decimal


class SessionCostPublic(BaseModel):
    """A session's cost: the running cost while it charges (up to its last register
    reading), the CDR's once it is billed."""

    session_id: uuid.UUID
    status: Literal["active", "closed"]
    final: bool = Field(description="true: the issued CDR's totals; false: priced so far")
    cdr_id: str | None = Field(description="The CDR the totals come from (final only)")
    as_of: datetime = Field(description="Telemetry time the cost is up to (the last reading)")
    tariff_id: str
    currency: str
    total_cost: MoneyPublic
    total_energy_kwh: Decimal
    total_time_h: Decimal = Field(description="Hours since the start, parking included")
    total_parking_time_h: Decimal


class ReceiptLinePublic(BaseModel):
    description: str
    start: str | None = Field(description="When the line's period began (RFC 3339)")
    quantity: Decimal = Field(description="Billed volume, after step_size")
    unit: str
    unit_price_excl_vat: Decimal
    vat_rate: Decimal | None = Field(description="Percent; null: no VAT applicable")
    excl_vat: Decimal
    incl_vat: Decimal


class ReceiptVatPublic(BaseModel):
    rate: Decimal | None
    net: Decimal
    vat: Decimal
    gross: Decimal


class ReceiptPaymentPublic(BaseModel):
    provider: str
    status: str
    captured: Decimal
    refunded: Decimal


class ReceiptPublic(BaseModel):
    """The driver's receipt, from the session's CDR in force: the lines add up to the
    totals, the VAT rows to the total incl. VAT."""

    cdr_id: str
    session_id: str | None
    start: str
    end: str
    location: str | None
    evse: str | None
    tariff_id: str | None
    currency: str
    energy_kwh: Decimal
    time_h: Decimal
    parking_h: Decimal
    lines: list[ReceiptLinePublic]
    vat: list[ReceiptVatPublic]
    total_excl_vat: Decimal
    total_incl_vat: Decimal
    payment: ReceiptPaymentPublic | None
    signed_data: bool = Field(description="The meter signed the values (OCMF etc.)")
