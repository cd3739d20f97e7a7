"""The station registry: ``StationBase`` (site, model), ``StationCreate`` (the body of
POST: the id, the security profile), ``StationUpdate`` (PATCH: only what is sent
changes), ``StationPublic`` (never the password or its hash), ``StationProvisioned``
(POST and password rotation: the generated password, shown this once), ``StationsPage``;
connectors: ``ConnectorBase`` (ratings the allocator uses), ``ConnectorUpdate`` (PUT),
``ConnectorPublic``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from api.params import EXAMPLE_SITE, EXAMPLE_STATION, ID_PATTERN, MAX_ID_LENGTH, one_of

# The identity is the last segment of the station's websocket URL (OCPP-J): printable
# ASCII without "/", "%" or "?", at most 48 characters (OCPP 2.0.1 identity).
STATION_ID_PATTERN = r"^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,48}$"
SiteId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, examples=[EXAMPLE_SITE]),
]
Label = Annotated[str, Field(min_length=1, max_length=50, pattern=ID_PATTERN)]
Profile = Annotated[
    int, Strict(), one_of(0, 1, 2, 3), WithJsonSchema({"type": "integer", "enum": [0, 1, 2, 3]})
]
Phases = Annotated[int, Strict(), one_of(1, 3), WithJsonSchema({"type": "integer", "enum": [1, 3]})]
PROFILE_DESCRIPTION = (
    "OCPP security profile: 1 = HTTP Basic (a password is generated), 2 = HTTP Basic over "
    "TLS only, 0 = no authentication (legacy stations). 3 (TLS client certificates) is "
    "not supported by the gateway (422, docs/registry.md)"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StationBase(BaseModel):
    site_id: SiteId | None = Field(default=None, description="The site (null: on none)")
    vendor: Label | None = Field(default=None, description="Vendor, if known before boot")
    model: Label | None = Field(default=None, description="Model, if known before boot")


class StationCreate(StationBase, _Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"charge_point_id": "CP-NEW-1", "site_id": EXAMPLE_SITE}]},
    )

    charge_point_id: str = Field(
        pattern=STATION_ID_PATTERN, description="The identity the station connects with"
    )
    security_profile: Profile = Field(default=1, description=PROFILE_DESCRIPTION)


class StationUpdate(_Body):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"site_id": EXAMPLE_SITE}]}
    )

    site_id: SiteId | None = Field(default=None, description="Move it (null: to no site)")
    security_profile: Profile | SkipJsonSchema[None] = Field(
        default=None,
        description=PROFILE_DESCRIPTION + "; 1 and 2 need a password (POST .../password)",
    )
    vendor: Label | None = None
    model: Label | None = None


class StationPublic(StationBase):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "charge_point_id": EXAMPLE_STATION,
                    "site_id": EXAMPLE_SITE,
                    "security_profile": 1,
                    "has_password": True,
                    "status": "active",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )

    charge_point_id: str
    security_profile: int
    has_password: bool = Field(description="A password is stored (only as an argon2 hash)")
    status: Literal["active", "decommissioned"]
    serial_number: str | None = None
    firmware_version: str | None = None
    ocpp_version: str | None = None
    created_at: datetime
    last_boot_at: datetime | None = None
    last_seen_at: datetime | None = None
    decommissioned_at: datetime | None = None


class StationProvisioned(StationPublic):
    password: str | None = Field(
        description="The station's new HTTP Basic password (profiles 1 and 2), shown only in "
        "this answer: it is stored as an argon2 hash and cannot be read again"
    )


class StationsPage(BaseModel):
    items: list[StationPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )


Amperes = Annotated[float, Field(ge=0, le=99999, description="Amperes (stored to 0.1 A)")]
MaxAmperes = Annotated[float, Field(ge=0.1, le=99999, description="Amperes (stored to 0.1 A)")]


class ConnectorBase(BaseModel):
    connector_type: Label | None = Field(
        default=None, description="The plug (e.g. Type2, CCS2, CHAdeMO)", examples=["Type2"]
    )
    phases: Phases | None = Field(default=None, description="Phases it can supply (1 or 3)")
    min_current_a: Amperes | None = Field(
        default=None, description="Lowest current per phase it may be limited to (A)"
    )
    max_current_a: MaxAmperes | None = Field(
        default=None, description="Highest current per phase (A): the allocator's `max_a`"
    )
    max_power_w: int | None = Field(default=None, ge=1, le=2_000_000, description="Watts")
    phase_rotation: Literal["RST", "RTS", "SRT", "STR", "TRS", "TSR"] | None = Field(
        default=None, description="OCPP PhaseRotation: which grid phases its L1, L2, L3 are on"
    )


class ConnectorUpdate(ConnectorBase, _Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"connector_type": "Type2", "phases": 3, "min_current_a": 6, "max_current_a": 32}
            ]
        },
    )


class ConnectorPublic(ConnectorBase):
    charge_point_id: str
    connector_id: int
    status: str | None = Field(default=None, description="The last status the station sent")
    status_at: datetime | None = None
