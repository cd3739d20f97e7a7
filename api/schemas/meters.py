"""Smart meters (MQTT): ``MeterBase`` (the station connector it measures, its role, billing),
``MeterCreate`` (POST, with the id), ``MeterUpdate`` (PATCH: only what is sent changes),
``MeterPublic`` (with the MQTT topic the bridge reads it on), ``MetersPage``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.params import EXAMPLE_STATION, INT32_MAX
from api.schemas.stations import STATION_ID_PATTERN

# store.meters.METER_ID_RE (the id is a segment of the MQTT topic)
METER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Role = Literal["connector", "station", "non_controllable_load"]
ROLE_DESCRIPTION = (
    "connector: measures one connector (connector_id >= 1); station: the station as a whole "
    "(connector_id 0); non_controllable_load: other load on the station's supply "
    "(connector_id 0; never a billing meter)"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MeterBase(BaseModel):
    charge_point_id: str = Field(pattern=STATION_ID_PATTERN, examples=[EXAMPLE_STATION])
    connector_id: int = Field(default=1, ge=0, le=INT32_MAX)
    role: Role = Field(default="connector", description=ROLE_DESCRIPTION)
    is_billing_meter: bool = Field(
        default=False, description="Its register is what sessions bill (one per connector)"
    )


class MeterCreate(MeterBase, _Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"meter_id": "MTR-NEW-1", "charge_point_id": "CP-1"}]},
    )

    meter_id: str = Field(pattern=METER_ID_PATTERN, description="The id in its MQTT topic")


class MeterUpdate(_Body):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"is_billing_meter": False}]}
    )

    charge_point_id: str | SkipJsonSchema[None] = Field(default=None, pattern=STATION_ID_PATTERN)
    connector_id: int | SkipJsonSchema[None] = Field(default=None, ge=0, le=INT32_MAX)
    role: Role | SkipJsonSchema[None] = Field(default=None, description=ROLE_DESCRIPTION)
    is_billing_meter: bool | SkipJsonSchema[None] = None


class MeterPublic(MeterBase):
    meter_id: str
    mqtt_topic: str = Field(
        description="Where the bridge reads it with the default topic pattern "
        "(`meters/<meter_id>/reading`)"
    )
    created_at: datetime


class MetersPage(BaseModel):
    items: list[MeterPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
