"""Sites: ``SiteBase`` (name, time zone, static grid capacity), ``SiteCreate`` (POST,
with the id), ``SiteUpdate`` (PATCH: only what is sent changes), ``SitePublic``,
``SitesPage``. Time-varying limits are not part of a site's registry entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.params import EXAMPLE_SITE, ID_PATTERN, MAX_ID_LENGTH

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=ID_PATTERN)]
TimeZone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]+$",
        description="IANA time zone (tariff restrictions are the site's local times); an "
        "unknown zone is a 422",
        examples=["Europe/Amsterdam"],
    ),
]
CapacityW = Annotated[
    int, Field(ge=1, le=10**12, description="Grid connection limit in watts", examples=[50000])
]
CurrentA = Annotated[
    float,
    Field(
        ge=0.1,
        le=999999,
        description="Grid connection limit per phase in amperes (stored to 0.1 A)",
        examples=[80],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SiteBase(BaseModel):
    name: Name
    time_zone: TimeZone = "UTC"
    capacity_w: CapacityW | None = None
    max_current_a: CurrentA | None = None


class SiteCreate(SiteBase, _Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "site_id": "DEPOT-2",
                    "name": "Depot 2",
                    "time_zone": "Europe/Amsterdam",
                    "capacity_w": 50000,
                }
            ]
        },
    )

    site_id: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\u0000-\u001f\u007f-\u009f/]+$"
    )


class SiteUpdate(_Body):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"capacity_w": 60000}]}
    )

    name: Name | SkipJsonSchema[None] = None
    time_zone: TimeZone | SkipJsonSchema[None] = None
    capacity_w: CapacityW | None = Field(default=None, description="null: unknown")
    max_current_a: CurrentA | None = Field(default=None, description="null: unknown")


class SitePublic(SiteBase):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "site_id": EXAMPLE_SITE,
                    "name": "Depot",
                    "time_zone": "UTC",
                    "capacity_w": 50000,
                    "max_current_a": None,
                    "created_at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )

    site_id: str
    created_at: datetime


class SitesPage(BaseModel):
    items: list[SitePublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
