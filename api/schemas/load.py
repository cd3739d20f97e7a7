"""Live site load and per-connector load series."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ConnectorPowerPublic(BaseModel):
    connector_id: int
    power_w: float


class StationPowerPublic(BaseModel):
    charge_point_id: str
    power_w: float
    as_of: datetime
    offline: bool
    connectors: list[ConnectorPowerPublic]


class SiteLoadPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: str
    name: str
    capacity_w: int | None
    total_w: float = Field(description="Sum of the stations' latest power, W")
    utilisation_pct: float | None = Field(description="100 * total / capacity")
    over_capacity: bool
    as_of: datetime | None = Field(description="Newest measurement in the total (null: none)")
    published_at: datetime | None = Field(description="When the load flow computed it")
    station_count: int
    offline_stations: int
    stations: list[StationPowerPublic]


class LoadPointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    bucket: datetime = Field(description="Start of the bucket (UTC)")
    sample_count: int
    avg_power_w: float | None = Field(description="Mean of the power samples, W")
    max_power_w: float | None
    energy_wh: float | None = Field(description="Energy from the meter register, Wh")


class LoadSeriesPublic(BaseModel):
    charge_point_id: str
    connector_id: int
    resolution: Literal["1m", "1h", "1d"]
    points: list[LoadPointPublic]
