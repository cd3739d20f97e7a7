"""Pydantic v2 response models (Base/Public families)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorPublic(BaseModel):
    detail: str = Field(description="What went wrong, for humans.")


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    database: str = Field(description='"ok", or the reason the database check failed')
    broker: str = Field(description='"ok", "disabled" (not configured), or the failure reason')


class SessionBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    status: Literal["active", "closed"]
    started_at: datetime
    stopped_at: datetime | None
    meter_start_wh: int
    meter_stop_wh: int | None
    energy_wh: int | None = Field(description="Energy from the meter register, in Wh")
    energy_source: str | None
    quality: Literal["exact", "corrected", "estimated"]
    quality_reasons: list[str]
    stop_reason: str | None
    sample_count: int


class SessionPublic(SessionBase):
    session_id: uuid.UUID
    duration_s: float | None = Field(description="stopped_at - started_at; null while active")


class SessionsPage(BaseModel):
    items: list[SessionPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )
