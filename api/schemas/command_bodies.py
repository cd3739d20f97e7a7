"""The typed bodies of the smart charging, configuration, diagnostics, reservation and
local list commands (``POST /v1/stations/{id}/commands/{action}``): one meaning for
OCPP 1.6 and 2.0.1 stations where the versions agree; ``set-variables`` and
``get-variables`` are 2.0.1 only. The wire forms: ``api.command_forms``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from api.params import INT32_MAX, Timestamp
from api.schemas.commands import ID_TAG_PATTERN

ConnectorId = Field(ge=0, le=INT32_MAX, description="1.6 connector / 2.0.1 EVSE id; 0: station")
# A configuration key / 2.0.1 component or variable name (CiString50, printable ASCII).
NAME_PATTERN = r"^[\x21-\x7e]{1,50}$"
IdTokenType = Literal["Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ smart charging


class ProfilePurpose(StrEnum):
    CHARGE_POINT_MAX = "charge_point_max"  # 1.6 ChargePointMaxProfile, 2.0.1 ChargingStationMax
    TX_DEFAULT = "tx_default"  # TxDefaultProfile
    TX = "tx"  # TxProfile: one transaction's


class ProfileKind(StrEnum):
    ABSOLUTE = "absolute"
    RECURRING = "recurring"
    RELATIVE = "relative"


class SchedulePeriod(_Body):
    start_period_s: StrictInt = Field(
        ge=0, le=INT32_MAX, description="Seconds from the schedule start"
    )
    limit: Decimal = Field(
        ge=0,
        le=10**7,
        decimal_places=3,
        description="In the schedule's unit (W or A); OCPP 1.6 takes multiples of 0.1",
    )
    number_phases: StrictInt | None = Field(default=None, ge=1, le=3)


class SetChargingProfileCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "connector_id": 1,
                    "profile_id": 1,
                    "purpose": "tx_default",
                    "kind": "relative",
                    "unit": "W",
                    "periods": [{"start_period_s": 0, "limit": 7400.3}],
                }
            ]
        },
    )

    connector_id: StrictInt = ConnectorId
    profile_id: StrictInt = Field(
        ge=1, le=INT32_MAX, description="The profile's id (also to clear it)"
    )
    stack_level: StrictInt = Field(default=0, ge=0, le=INT32_MAX)
    purpose: ProfilePurpose
    kind: ProfileKind
    recurrency: Literal["daily", "weekly"] | None = Field(
        default=None, description="For a recurring profile (and only then)"
    )
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    start_schedule: Timestamp | None = Field(
        default=None, description="Absolute and recurring profiles: when the schedule starts"
    )
    duration_s: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    unit: Literal["W", "A"]
    periods: list[SchedulePeriod] = Field(min_length=1, max_length=24)
    transaction_id: str | None = Field(
        default=None,
        pattern=r"^[\x21-\x7e]{1,36}$",
        description="A tx profile's transaction (1.6: an integer)",
    )
    session_id: uuid.UUID | None = Field(
        default=None, description="Or the chargeflow session whose transaction it limits"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SetChargingProfileCreate:
        starts = [p.start_period_s for p in self.periods]
        if starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("periods start at 0 s and their start_period_s increase")
        if (self.kind == ProfileKind.RECURRING) != (self.recurrency is not None):
            raise ValueError("recurrency is given for a recurring profile, and only then")
        has_tx = self.transaction_id is not None or self.session_id is not None
        if self.purpose == ProfilePurpose.TX:
            if (self.transaction_id is None) == (self.session_id is None):
                raise ValueError("a tx profile names exactly one of transaction_id, session_id")
            if self.connector_id == 0:
                raise ValueError("a tx profile is set on the transaction's connector (not 0)")
        elif has_tx:
            raise ValueError("only a tx profile names a transaction or session")
        if self.purpose == ProfilePurpose.CHARGE_POINT_MAX and self.connector_id != 0:
            raise ValueError("a charge_point_max profile is set on connector 0")
        return self


class ClearChargingProfileCreate(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"profile_id": 1}]})

    profile_id: StrictInt | None = Field(default=None, ge=1, le=INT32_MAX)
    connector_id: StrictInt | None = Field(default=None, ge=0, le=INT32_MAX)
    purpose: ProfilePurpose | None = None
    stack_level: StrictInt | None = Field(default=None, ge=0, le=INT32_MAX)

    @model_validator(mode="after")
    def _one_way(self) -> ClearChargingProfileCreate:
        criteria = (self.connector_id, self.purpose, self.stack_level)
        if (self.profile_id is None) == all(c is None for c in criteria):
            raise ValueError(
                "give profile_id, or any of connector_id, purpose, stack_level (not both)"
            )
        return self


class GetCompositeScheduleCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"connector_id": 1, "duration_s": 3600, "unit": "W"}]},
    )

    connector_id: StrictInt = ConnectorId
    duration_s: StrictInt = Field(ge=1, le=INT32_MAX)
    unit: Literal["W", "A"] | None = Field(default=None, description="Omitted: the station's")


# ------------------------------------------------------------------- configuration


class ConfigurationCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"key": "HeartbeatInterval", "value": "300", "component": "OCPPCommCtrlr"}]
        },
    )

    key: str = Field(pattern=NAME_PATTERN, description="1.6 key / 2.0.1 variable name")
    value: str = Field(max_length=500, pattern=r"^[^\u0000-\u001f]*$")
    component: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="The 2.0.1 component of the variable (required there; ignored for 1.6)",
    )


class GetConfigurationCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"keys": ["HeartbeatInterval"], "component": "OCPPCommCtrlr"}]
        },
    )

    keys: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default=[],
        max_length=50,
        description="1.6 keys / 2.0.1 variable names; empty: every 1.6 key (2.0.1: give keys)",
    )
    component: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="The 2.0.1 component of the variables"
    )


class VariableRef(_Body):
    component: str = Field(pattern=NAME_PATTERN)
    variable: str = Field(pattern=NAME_PATTERN)
    instance: str | None = Field(default=None, pattern=NAME_PATTERN)
    evse_id: StrictInt | None = Field(default=None, ge=0, le=INT32_MAX)


class VariableValue(VariableRef):
    value: str = Field(max_length=1000, pattern=r"^[^\u0000-\u001f]*$")


class SetVariablesCreate(_Body):
    variables: list[VariableValue] = Field(min_length=1, max_length=50)


class GetVariablesCreate(_Body):
    variables: list[VariableRef] = Field(min_length=1, max_length=50)


# --------------------------------------------------------------------- diagnostics


class UploadDiagnosticsCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"location": "ftp://logs.example.com/upload", "retries": 1}]
        },
    )

    location: str = Field(
        pattern=r"^(ftp|ftps|http|https|sftp)://[\x21-\x7e]{1,480}$",
        description="Where the station uploads the file (URL)",
    )
    log_type: Literal["diagnostics", "security"] = Field(
        default="diagnostics", description="security: 2.0.1 SecurityLog (not in 1.6)"
    )
    since: Timestamp | None = Field(default=None, description="Oldest entries to include")
    until: Timestamp | None = Field(default=None, description="Latest entries to include")
    retries: StrictInt | None = Field(default=None, ge=0, le=100)
    retry_interval_s: StrictInt | None = Field(default=None, ge=1, le=86_400)


# -------------------------------------------------------------------- reservations


class ReserveCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id_tag": "TAG-1", "expires_at": "2999-01-01T00:00:00Z", "connector_id": 1}
            ]
        },
    )

    id_tag: str = Field(pattern=ID_TAG_PATTERN, description="Who the reservation is for")
    expires_at: Timestamp
    connector_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="1.6 connector / 2.0.1 EVSE id; omitted: any (1.6 connector 0)",
    )
    id_token_type: IdTokenType = Field(default="Central", description="2.0.1 idToken type")


class CancelReservationCreate(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reservation_id": 1}]}
    )

    reservation_id: StrictInt = Field(
        ge=1, le=INT32_MAX, description="The id chargeflow drew for the reserve command"
    )


# ---------------------------------------------------------------------- local list


class AuthStatus(StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class LocalListEntry(_Body):
    id_tag: str = Field(pattern=ID_TAG_PATTERN)
    status: AuthStatus | None = Field(
        default=None, description="Omitted in a differential update: remove the entry"
    )
    expires_at: Timestamp | None = None
    id_token_type: IdTokenType = Field(default="Central", description="2.0.1 idToken type")

    @model_validator(mode="after")
    def _expiry_needs_status(self) -> LocalListEntry:
        if self.expires_at is not None and self.status is None:
            raise ValueError("an entry with expires_at has a status")
        return self


class SendLocalListCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "version": 1,
                    "update_type": "full",
                    "entries": [{"id_tag": "TAG-1", "status": "Accepted"}],
                }
            ]
        },
    )

    version: StrictInt = Field(
        ge=1, le=INT32_MAX, description="1.6 listVersion / 2.0.1 versionNumber"
    )
    update_type: Literal["full", "differential"]
    entries: list[LocalListEntry] = Field(default=[], max_length=500)

    @model_validator(mode="after")
    def _full_has_status(self) -> SendLocalListCreate:
        if self.update_type == "full" and any(e.status is None for e in self.entries):
            raise ValueError("every entry of a full update has a status")
        return self


class ClearCacheCreate(_Body):
    pass
