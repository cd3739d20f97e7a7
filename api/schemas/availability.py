"""Connector availability and per-station status history."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bus.normalized import ConnectorStatusName

# A connector of a disconnected station is Offline, whatever it reported last.
AvailabilityStatus = Literal[ConnectorStatusName, "Offline"]


class AvailabilityPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    charge_point_id: str
    connector_id: int = Field(description="OCPP 1.6 connector / 2.0.1 EVSE id")
    site_id: str | None
    status: AvailabilityStatus = Field(
        description="The connector's status, or Offline while the station is disconnected"
    )
    available: bool = Field(description="Free to plug in now (status Available)")
    connector_status: ConnectorStatusName = Field(
        description="Last status the connector reported (kept while offline)"
    )
    error_code: str | None = Field(
        description="OCPP 1.6 errorCode of the last status; null for the public role"
    )
    status_at: datetime = Field(description="When the connector reported its status")
    online: bool
    connection_changed_at: datetime | None = Field(
        description="When the station last went online or offline"
    )


class AvailabilityList(BaseModel):
    items: list[AvailabilityPublic]


class StatusChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    connector_id: int
    at: datetime
    status: AvailabilityStatus = Field(
        description="The connector's status, or Offline: the connector is offline from "
        "an Offline row until its next row (normally the status it had, at the "
        "time its station came back)"
    )
    ocpp_status: str = Field(
        description="As the station sent it (2.0.1: e.g. Occupied); Offline on Offline rows"
    )
    error_code: str | None
    reason: str | None = Field(
        description="Set on rows written because the station's connection changed: the "
        "gateway's reason for going offline (e.g. 'closed by station') on "
        "Offline rows, 'connected' on the status restored when it came back; "
        "null on statuses the station reported"
    )


class StatusHistoryPublic(BaseModel):
    charge_point_id: str
    items: list[StatusChangePublic] = Field(description="Newest first")
