"""Tariffs and where they apply: ``TariffPublic`` (one stored version: the OCPI Tariff
and who stored it when), ``TariffsPage``, ``TariffVersionsPublic``; assignments:
``TariffAssignmentBase`` (what applies where and when), ``TariffAssignmentCreate`` (the
body of POST), ``TariffAssignmentPublic`` (with its id and audit fields),
``TariffAssignmentsPage``; ``TariffResolutionPublic`` (which tariff applies and why).

There is no Update schema: a tariff version never changes (storing the same id again
is a new version) and an assignment changes only by being ended (DELETE)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.params import ID_PATTERN, MAX_ID_LENGTH, Timestamp
from store.tariffs import Scope

TARIFF_ID_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f/]+$"
ASSIGNMENT_CURSOR_PATTERN = r"^[1-9][0-9]{0,17}$"
MAX_TARGET_LENGTH = 2 * MAX_ID_LENGTH + 12  # "<charge point id>:<connector id>"

EXAMPLE_TARIFF_BODY: JsonDict = {
    "country_code": "NL",
    "party_id": "CFL",
    "id": "STANDARD",
    "currency": "EUR",
    "elements": [
        {"price_components": [{"type": "ENERGY", "price": 0.30, "vat": 21, "step_size": 1}]}
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}
EXAMPLE_TARIFF: JsonDict = {
    "tariff_id": "STANDARD",
    "version": 2,
    "currency": "EUR",
    "created_at": "2026-01-01T09:00:00Z",
    "created_by": "billing-desk",
    "tariff": EXAMPLE_TARIFF_BODY,
}
EXAMPLE_ASSIGNMENT: JsonDict = {
    "assignment_id": 1,
    "tariff_id": "STANDARD",
    "scope": "station",
    "target": "CP-1",
    "customer_group": None,
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": None,
    "created_by": "billing-desk",
    "created_at": "2025-12-20T10:00:00Z",
    "ended_by": None,
    "ended_at": None,
}

TariffIdField = Annotated[
    str,
    Field(
        min_length=1,
        max_length=36,
        pattern=TARIFF_ID_PATTERN,
        description="The OCPI Tariff's `id`",
    ),
]
GroupField = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
]


class TariffPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_TARIFF]})

    tariff_id: str = Field(description="The OCPI Tariff's `id`")
    version: int = Field(ge=1, description="1, 2, ...: each POST of the same id adds one")
    currency: str = Field(description="ISO 4217")
    created_at: datetime = Field(description="When this version was stored (server clock)")
    created_by: str = Field(description="The API key name that stored it")
    tariff: dict[str, Any] = Field(
        description="The OCPI 2.2.1 Tariff as stored (numbers exact; key order may differ)"
    )


class TariffsPage(BaseModel):
    items: list[TariffPublic] = Field(description="The latest version of each tariff, by id")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


class TariffVersionsPublic(BaseModel):
    tariff_id: str
    versions: list[TariffPublic] = Field(description="Every version, oldest first")


class TariffAssignmentBase(BaseModel):
    tariff_id: TariffIdField
    scope: Scope = Field(
        description="connector (target `<charge_point_id>:<connector_id>`), station "
        "(charge point id), site (site id), customer_group (the group's name: its members "
        "everywhere), default (no target)"
    )
    target: (
        Annotated[str, Field(min_length=1, max_length=MAX_TARGET_LENGTH, pattern=ID_PATTERN)] | None
    ) = Field(default=None, description="What the scope applies to; null only for default")
    customer_group: GroupField | None = Field(
        default=None,
        description="Only for drivers in this customer group (site, station and connector "
        "scopes); null = everyone",
    )


class TariffAssignmentCreate(TariffAssignmentBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tariff_id": "STANDARD",
                    "scope": "station",
                    "target": "CP-1",
                    "valid_from": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )

    valid_from: Timestamp | None = Field(
        default=None, description="Inclusive; default now. RFC 3339 with an offset"
    )
    valid_until: Timestamp | None = Field(
        default=None, description="Exclusive, after valid_from; null = until ended"
    )


class TariffAssignmentPublic(TariffAssignmentBase):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_ASSIGNMENT]})

    assignment_id: int
    target: str | None = Field(description="What the scope applies to; null only for default")
    customer_group: str | None = Field(description="Only for this group's drivers; null = all")
    tariff_id: str
    valid_from: datetime = Field(description="Inclusive")
    valid_until: datetime | None = Field(
        description="Exclusive; null = open. Equal to valid_from: ended before it began"
    )
    created_by: str = Field(description="The API key name that created it")
    created_at: datetime
    ended_by: str | None = Field(description="The API key name that ended it")
    ended_at: datetime | None = Field(description="When it was ended (server clock)")


class TariffAssignmentsPage(BaseModel):
    items: list[TariffAssignmentPublic]
    next_cursor: str | None = Field(
        pattern=ASSIGNMENT_CURSOR_PATTERN,
        description="Pass as `cursor` to get the next page; null on the last page",
    )


class TariffResolutionPublic(BaseModel):
    tariff: TariffPublic = Field(description="The version that applies")
    assignment: TariffAssignmentPublic = Field(description="The assignment that decided it")
    precedence: int = Field(
        description="The assignment's rank: 7 connector+group, 6 connector, 5 station+group, "
        "4 station, 3 site+group, 2 site, 1 customer_group, 0 default"
    )
    site_id: str | None = Field(description="The station's site (null: none known)")
    passed_over: list[TariffAssignmentPublic] = Field(
        description="Higher-ranked assignments valid at `at` whose tariff had no version in "
        "force then (created later, or outside its start/end_date_time)"
    )
    reason: str = Field(description="Why this tariff, for people")
