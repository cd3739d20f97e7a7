"""The usage report: ``UsageFiguresBase`` (what is counted, for a connector or the
network), ``ConnectorUsagePublic``, ``PeakHourPublic`` and ``UsageReportPublic``.

Ratios and amounts are decimal strings written exactly (``"0.2500"``, ``"12.34"``);
times are whole seconds; energy is whole Wh from meter registers. docs/reports.md
defines every figure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from api.schemas.cdrs import DECIMAL_PATTERN
from reports.usage import ConnectorUsage, Money, PeakCell, UsageFigures, UsageReport

Ratio = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["0.2500"])]
Amount = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["12.34"])]


class RevenuePublic(BaseModel):
    currency: str = Field(description="ISO 4217")
    total_excl_vat: Amount = Field(description="Sum of the CDRs' total_cost.excl_vat")
    total_incl_vat: Amount = Field(description="Sum of the CDRs' total_cost.incl_vat")

    @classmethod
    def of(cls, money: Money) -> RevenuePublic:
        return cls(
            currency=money.currency,
            total_excl_vat=str(money.total_excl),
            total_incl_vat=str(money.total_incl),
        )


class UsageFiguresBase(BaseModel):
    connectors: int = Field(description="Connectors counted (1 for a connector's row)")
    period_s: int = Field(description="Observed seconds: from `from` to min(`to`, now)")
    charging_s: int = Field(description="Seconds in status Charging")
    idle_s: int = Field(
        description="Plugged in, not charging: Preparing, SuspendedEV, SuspendedEVSE, Finishing"
    )
    occupied_s: int = Field(description="charging_s + idle_s")
    available_s: int = Field(description="Seconds Available or Reserved")
    downtime_s: int = Field(description="Seconds Faulted, Unavailable or Offline")
    unknown_s: int = Field(description="Seconds before the connector's first known status")
    utilisation: Ratio = Field(description="charging_s / (period_s x connectors)")
    occupancy: Ratio = Field(description="occupied_s / (period_s x connectors)")
    energy_wh: int = Field(description="Energy delivered in the period (meter registers)")
    sessions: int = Field(description="Sessions that started in the period")
    average_duration_s: int | None = Field(
        description="Mean start-to-stop time of those sessions that have stopped"
    )
    revenue: list[RevenuePublic] = Field(
        description="Issued CDRs (credits negative) of sessions started in the period, per currency"
    )
    faults: int = Field(description="Faults that began in the period")
    error_codes: dict[str, int] = Field(description="Those faults by OCPP error code")
    alerts: int = Field(description="Fault alerts first seen in the period")

    @classmethod
    def fields_of(cls, figures: UsageFigures) -> dict[str, object]:
        return {
            "connectors": figures.connectors,
            "period_s": figures.period_s,
            "charging_s": figures.charging_s,
            "idle_s": figures.idle_s,
            "occupied_s": figures.occupied_s,
            "available_s": figures.available_s,
            "downtime_s": figures.downtime_s,
            "unknown_s": figures.unknown_s,
            "utilisation": str(figures.utilisation),
            "occupancy": str(figures.occupancy),
            "energy_wh": figures.energy_wh,
            "sessions": figures.sessions,
            "average_duration_s": figures.average_duration_s,
            "revenue": [RevenuePublic.of(m) for m in figures.revenue],
            "faults": figures.faults,
            "error_codes": figures.error_codes,
            "alerts": figures.alerts,
        }


class UsageTotalsPublic(UsageFiguresBase):
    @classmethod
    def of(cls, figures: UsageFigures) -> UsageTotalsPublic:
        return cls.model_validate(cls.fields_of(figures))


class ConnectorUsagePublic(UsageFiguresBase):
    charge_point_id: str
    connector_id: int
    site_id: str | None

    @classmethod
    def of(cls, usage: ConnectorUsage) -> ConnectorUsagePublic:
        return cls.model_validate(
            {
                "charge_point_id": usage.charge_point_id,
                "connector_id": usage.connector_id,
                "site_id": usage.site_id,
                **cls.fields_of(usage.figures),
            }
        )


class PeakHourPublic(BaseModel):
    weekday: int = Field(ge=0, le=6, description="0 = Monday, local to time_zone")
    hour: int = Field(ge=0, le=23, description="Local hour of day")
    sessions: int = Field(description="Sessions started in this hour")
    energy_wh: int = Field(description="Their energy in the period")
    charging_s: int = Field(description="Charging time in this hour, all connectors")

    @classmethod
    def of(cls, cell: PeakCell) -> PeakHourPublic:
        return cls(
            weekday=cell.weekday,
            hour=cell.hour,
            sessions=cell.sessions,
            energy_wh=cell.energy_wh,
            charging_s=cell.charging_s,
        )


class UsageReportPublic(BaseModel):
    from_: datetime = Field(alias="from", description="Start of the period (inclusive)")
    to: datetime = Field(description="End of the period (exclusive)")
    observed_until: datetime = Field(description="min(to, now): time figures end here")
    time_zone: str = Field(description="IANA zone of the peak hours (the site's, else UTC)")
    site_id: str | None
    connectors: list[ConnectorUsagePublic]
    totals: UsageTotalsPublic
    peak_hours: list[PeakHourPublic] = Field(description="7 x 24 cells, Monday 00:00 first")

    model_config = {"populate_by_name": True}

    @classmethod
    def of(cls, report: UsageReport) -> UsageReportPublic:
        return cls.model_validate(
            {
                "from": report.start,
                "to": report.end,
                "observed_until": report.observed_until,
                "time_zone": report.time_zone,
                "site_id": report.site_id,
                "connectors": [ConnectorUsagePublic.of(c) for c in report.connectors],
                "totals": UsageTotalsPublic.of(report.totals),
                "peak_hours": [PeakHourPublic.of(p) for p in report.peak_hours],
            }
        )
