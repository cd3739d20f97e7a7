"""Remote commands: the typed bodies of ``POST /v1/stations/{id}/commands/{action}``
(one meaning for OCPP 1.6 and 2.0.1 stations), the raw passthrough body, and
``CommandPublic`` (a command and its outcome) with its page."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, model_validator

from api.params import CURSOR_PATTERN, INT32_MAX
from bus.commands import CommandStatus

# OCPP 1.6 idTag is CiString20; a 2.0.1 idToken is at most 36 characters.
ID_TAG_PATTERN = r"^[\x21-\x7e]{1,20}$"
ACTION_PATTERN = r"^[A-Za-z]{1,64}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteStartCreate(_Body):
    id_tag: str = Field(pattern=ID_TAG_PATTERN, description="The id tag / idToken to charge for")
    connector_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="OCPP 1.6 connector / 2.0.1 EVSE id; omitted: the station chooses",
    )
    id_token_type: Literal[
        "Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress"
    ] = Field(default="Central", description="2.0.1 idToken type (ignored for 1.6)")


class RemoteStopCreate(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"transaction_id": "42"}]}
    )

    transaction_id: str | None = Field(
        default=None,
        pattern=r"^[\x21-\x7e]{1,36}$",
        description="The station's transaction id (1.6: an integer)",
        examples=["42"],
    )
    session_id: uuid.UUID | None = Field(
        default=None, description="Or the chargeflow session whose transaction to stop"
    )

    @model_validator(mode="after")
    def _one_of(self) -> RemoteStopCreate:
        if (self.transaction_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of transaction_id and session_id")
        return self


class ResetType(StrEnum):
    SOFT = "soft"  # 1.6 Soft, 2.0.1 OnIdle (after the running transactions)
    HARD = "hard"  # 1.6 Hard, 2.0.1 Immediate


class ResetCreate(_Body):
    type: ResetType = Field(
        description="soft: 1.6 Soft / 2.0.1 OnIdle; hard: 1.6 Hard / 2.0.1 Immediate"
    )


class UnlockConnectorCreate(_Body):
    connector_id: StrictInt = Field(ge=1, le=INT32_MAX, description="1.6 connector / 2.0.1 EVSE id")


class Availability(StrEnum):
    OPERATIVE = "operative"
    INOPERATIVE = "inoperative"


class ChangeAvailabilityCreate(_Body):
    availability: Availability
    connector_id: StrictInt | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="1.6 connector / 2.0.1 EVSE id; omitted or 0: the whole station",
    )


class TriggerableMessage(StrEnum):
    BOOT_NOTIFICATION = "BootNotification"
    FIRMWARE_STATUS_NOTIFICATION = "FirmwareStatusNotification"
    HEARTBEAT = "Heartbeat"
    METER_VALUES = "MeterValues"
    STATUS_NOTIFICATION = "StatusNotification"


class TriggerMessageCreate(_Body):
    message: TriggerableMessage = Field(
        description="A message both versions know (others: the raw endpoint)"
    )
    connector_id: StrictInt | None = Field(
        default=None, ge=1, le=INT32_MAX, description="1.6 connector / 2.0.1 EVSE id"
    )


class RawCommandCreate(_Body):
    action: str = Field(
        pattern=ACTION_PATTERN,
        description="The OCPP action of the station's version, e.g. GetConfiguration",
        examples=["GetConfiguration"],
    )
    payload: dict[str, JsonValue] = Field(
        description="The request payload as on the wire (camelCase), validated against the "
        "station's OCPP version's schema",
        examples=[{"key": ["HeartbeatInterval"]}],
    )


class CommandPublic(BaseModel):
    command_id: uuid.UUID
    station_id: str
    action: str = Field(description="The OCPP action sent (of the station's version)")
    payload: dict[str, Any] = Field(description="The request payload sent (camelCase)")
    ocpp_version: str | None
    status: CommandStatus = Field(
        description="pending -> sent -> accepted | rejected | failed | timed_out; expired "
        "(never sent in time), offline (the station is not connected)"
    )
    requested_by: str = Field(description="The API key's name")
    created_at: datetime
    expires_at: datetime = Field(description="Not sent after this (then expired)")
    sent_at: datetime | None
    completed_at: datetime | None
    response: dict[str, Any] | None = Field(
        description="The station's answer (for a CALLERROR: errorCode, errorDescription, "
        "errorDetails)"
    )
    error: str | None = Field(description="Why it did not succeed, in words")
    gateway_id: str | None = Field(description="The gateway replica that decided it")
    transaction_id: str | None = Field(
        default=None,
        description="A remote start: the station's transaction it produced, once the "
        "gateway matched the start (2.0.1 remoteStartId; 1.6 the next StartTransaction on "
        "the connector with the id tag); null until then and for other commands",
    )
    session_id: uuid.UUID | None = Field(
        default=None,
        description="A remote start: the session of that transaction, once stored; null "
        "until then (`?wait_for=session` waits for it)",
    )


class CommandsPage(BaseModel):
    items: list[CommandPublic]
    next_cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` for the next page; null on the last page",
    )
