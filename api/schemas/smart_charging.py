"""Smart charging: a site's time-varying limits (``LimitWindowBase``, ``SiteLimitsPut``,
``SiteLimitsPublic``), its allocation (``AllocationPublic``) and a session's charging
needs (``ChargingNeedsPut``, ``ChargingNeedsPublic``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.params import Timestamp


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LimitWindowBase(BaseModel):
    starts_at: datetime = Field(description="From (included)")
    ends_at: datetime = Field(description="Until (excluded); after starts_at")
    max_current_a: float = Field(
        ge=0, le=999999, description="The site's limit per phase in the window (A, to 0.1 A)"
    )
    reason: str | None = Field(
        default=None, max_length=200, description="e.g. peak window, grid operator request"
    )


class LimitWindowPut(LimitWindowBase, _Body):
    starts_at: Timestamp = Field(description="From (included)")
    ends_at: Timestamp = Field(description="Until (excluded); after starts_at")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class SiteLimitsPut(_Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "windows": [
                        {
                            "starts_at": "2026-12-07T17:00:00Z",
                            "ends_at": "2026-12-07T20:00:00Z",
                            "max_current_a": 80,
                            "reason": "evening peak",
                        }
                    ]
                }
            ]
        },
    )
    windows: list[LimitWindowPut] = Field(
        max_length=500, description="The site's whole schedule (replaces the one before)"
    )


class SiteLimitsPublic(BaseModel):
    site_id: str
    capacity_w: int | None = Field(description="The connection's static limit in W")
    max_current_a: float | None = Field(description="The connection's static limit per phase")
    base_limit_a: float | None = Field(
        description="The static limit per phase the flow uses (max_current_a, else capacity_w "
        "over three phases at 230 V); null: the site is not controlled"
    )
    limit_now_a: float | None = Field(description="The limit in force now, windows included")
    windows: list[LimitWindowBase]


class SessionAllocation(BaseModel):
    station_id: str
    connector_id: int
    transaction_id: str | None
    current_a: float = Field(description="The limit per phase (0: paused)")
    site_phases: list[int]
    reason: str
    controlled: bool = Field(description="False: budgeted at full draw, no profile sent")


class AllocationPublic(BaseModel):
    site_id: str
    at: datetime = Field(description="Telemetry time of the round")
    limit_a: list[float]
    base_load_a: list[float]
    fixed_load_a: list[float]
    allocated_a: list[float]
    headroom_a: list[float]
    sessions: list[SessionAllocation]
    non_compliant: dict[str, datetime] = Field(
        description="Stations found drawing above an accepted limit, since when"
    )
    budgeted: list[str] = Field(
        description="Stations budgeted at full draw: they reject profiles or are unreachable"
    )


class ChargingNeedsBase(BaseModel):
    departure_at: datetime | None = Field(default=None, description="When the driver leaves")
    energy_wh: int | None = Field(
        default=None, ge=0, le=10**7, description="Energy the driver needs by then (Wh)"
    )


class ChargingNeedsPut(ChargingNeedsBase, _Body):
    departure_at: Timestamp | None = Field(default=None, description="When the driver leaves")
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"departure_at": "2026-12-07T18:30:00Z", "energy_wh": 20000}]
        },
    )


class ChargingNeedsPublic(ChargingNeedsBase):
    session_id: uuid.UUID
    station_id: str
    transaction_id: str


class SmartChargingResetPublic(BaseModel):
    station_id: str
    resets: int = Field(description="How many times the station was reset so far")
    cleared_non_compliant_since: datetime | None = Field(
        description="Since when the station had been non-compliant (None: it was not)"
    )
