"""Firmware: the typed ``update-firmware`` command body (one meaning for OCPP 1.6 and
2.0.1 stations) and the firmware rollouts (a set of stations updated in waves)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    model_validator,
)

from api.params import CURSOR_PATTERN, EXAMPLE_STATION, ID_PATTERN, INT32_MAX, MAX_ID_LENGTH

EXAMPLE_ROLLOUT_ID = uuid.UUID("8a3c5e71-2f4b-4d96-b1e0-7c9d8e6f5a42")  # tests seed it
LOCATION_PATTERN = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[\x21-\x7e]+$"


class UpdateFirmwareCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"location": "https://fw.example.com/sim-2.0.0.bin"}]},
    )

    location: str = Field(
        max_length=512,
        pattern=LOCATION_PATTERN,
        description="Where the station downloads the firmware (an absolute URI)",
        examples=["https://fw.example.com/sim-2.0.0.bin"],
    )
    retrieve_date: AwareDatetime | None = Field(
        default=None, description="Download from this time on (default: now)"
    )
    install_date: AwareDatetime | None = Field(
        default=None, description="2.0.1 installDateTime (1.6: not expressible)"
    )
    retries: StrictInt | None = Field(default=None, ge=0, le=INT32_MAX)
    retry_interval: StrictInt | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Seconds"
    )
    signing_certificate: str | None = Field(
        default=None, min_length=1, max_length=5500, description="2.0.1 only: PEM X.509"
    )
    signature: str | None = Field(
        default=None, min_length=1, max_length=800, description="2.0.1 only: base64"
    )


class WindowSpec(BaseModel):
    """A maintenance window: commands are sent only while it is open."""

    model_config = ConfigDict(extra="forbid")

    start_hour: StrictInt = Field(ge=0, le=23, description="Opens at this hour (local to `zone`)")
    end_hour: StrictInt = Field(
        ge=0, le=23, description="Closes at this hour (before start: past midnight; equal: all day)"
    )
    days: list[int] = Field(
        default=[0, 1, 2, 3, 4, 5, 6],
        min_length=1,
        max_length=7,
        description="Days the window opens, 0 = Monday",
    )
    zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="`site` (each station's site's time zone) or an IANA zone, e.g. UTC",
    )

    @model_validator(mode="after")
    def _valid(self) -> WindowSpec:
        if any(not 0 <= d <= 6 for d in self.days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        if self.zone != "site":
            try:
                ZoneInfo(self.zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.zone!r}") from None
        return self


class FirmwareRolloutCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "sim 2.0.0",
                    "stations": [EXAMPLE_STATION],
                    "firmware": {"location": "https://fw.example.com/sim-2.0.0.bin"},
                    "wave_size": 1,
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    stations: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="The target stations, in rollout order (or give `site_id`)",
    )
    site_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Or every station of this site",
    )
    firmware: UpdateFirmwareCreate = Field(
        description="The update-firmware command each station gets (retrieve_date: when sent)"
    )
    wave_size: StrictInt = Field(ge=1, le=10_000, description="Stations per wave (or a percentage)")
    wave_unit: Literal["count", "percent"] = "count"
    failure_threshold: StrictFloat = Field(
        default=0,
        ge=0,
        le=10_000,
        description="The rollout pauses when a wave's failures exceed this",
    )
    threshold_unit: Literal["count", "fraction"] = Field(
        default="count", description="count: failed stations; fraction: of the wave (0-1)"
    )
    window: WindowSpec | None = Field(default=None, description="None: any time")
    station_timeout_s: StrictInt = Field(
        default=3600, ge=10, le=7 * 86400, description="A station not done by then: timed_out"
    )

    @model_validator(mode="after")
    def _valid(self) -> FirmwareRolloutCreate:
        if (self.stations is None) == (self.site_id is None):
            raise ValueError("give exactly one of stations and site_id")
        if self.stations is not None:
            if len(set(self.stations)) != len(self.stations):
                raise ValueError("a station is listed twice")
            if any(re.fullmatch(ID_PATTERN, s) is None or len(s) > MAX_ID_LENGTH
                   for s in self.stations):  # fmt: skip
                raise ValueError("station ids are 1-64 characters without control characters")
        if self.wave_unit == "percent" and self.wave_size > 100:
            raise ValueError("a wave is at most 100 percent")
        if self.threshold_unit == "fraction" and self.failure_threshold > 1:
            raise ValueError("a fraction threshold is between 0 and 1")
        if self.firmware.retrieve_date is not None:
            raise ValueError("a rollout sets each station's retrieve_date when it sends")
        return self


RolloutStatus = Literal["pending", "running", "paused", "completed", "cancelled"]
StationState = Literal[
    "queued", "sent", "downloading", "installing", "installed", "failed", "timed_out"
]


class RolloutStationPublic(BaseModel):
    station_id: str
    state: StationState
    command_id: uuid.UUID | None = Field(description="The update-firmware command sent")
    sent_at: datetime | None
    last_status: str | None = Field(
        description="The last FirmwareStatusNotification status (or command outcome)"
    )
    updated_at: datetime


class WavePublic(BaseModel):
    wave: int = Field(description="1 = the first wave")
    counts: dict[str, int] = Field(description="Stations per state")
    stations: list[RolloutStationPublic]


class FirmwareRolloutPublic(BaseModel):
    rollout_id: uuid.UUID
    name: str
    status: RolloutStatus = Field(
        description="pending -> running -> paused (threshold or manual) -> running ... -> "
        "completed; cancelled"
    )
    firmware: UpdateFirmwareCreate
    wave_size: int
    wave_unit: Literal["count", "percent"]
    failure_threshold: float
    threshold_unit: Literal["count", "fraction"]
    window: WindowSpec | None
    station_timeout_s: int
    current_wave: int = Field(description="The wave being sent (1 = the first)")
    wave_count: int
    pause_reason: str | None
    counts: dict[str, int] = Field(description="Stations per state, all waves")
    created_by: str
    created_at: datetime
    updated_at: datetime


class FirmwareRolloutDetail(FirmwareRolloutPublic):
    waves: list[WavePublic]


class FirmwareRolloutsPage(BaseModel):
    items: list[FirmwareRolloutPublic]
    next_cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` for the next page; null on the last page",
    )
