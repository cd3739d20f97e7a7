"""Id tokens (the operator's list the gateway authorises with): ``IdTokenBase`` (type,
status, expiry, group, customer, membership tier), ``IdTokenCreate`` (POST, with the
token), ``IdTokenUpdate`` (PATCH: only what is sent changes), ``IdTokenPublic``,
``IdTokensPage``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.params import ID_PATTERN, MAX_ID_LENGTH, Timestamp
from api.schemas.payment_methods import EXAMPLE_ID_TAG

# OCPP 2.0.1 idToken: at most 36 characters (1.6 idTag: 20); printable ASCII, no "/".
ID_TOKEN_PATTERN = r"^[\x21-\x2e\x30-\x7e]{1,36}$"
TokenType = Literal["RFID", "app", "PIN", "central"]
Status = Literal["Accepted", "Blocked", "Expired", "Invalid"]
Tier = Literal["standard", "member", "fleet", "priority"]
Reference = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
ParentTag = Annotated[
    str,
    Field(
        pattern=ID_TOKEN_PATTERN,
        description="Group id (OCPP parentIdTag): a blocked or expired group blocks or "
        "expires its members when the group is in the list too",
    ),
]
TYPE_DESCRIPTION = "RFID card, app token, PIN code or a central (back-office) token"
STATUS_DESCRIPTION = (
    "What the gateway answers Authorize and transaction starts with (after its cache of "
    "`id_tag_cache_ttl_s`): Accepted, Blocked, Expired or Invalid"
)
TIER_DESCRIPTION = (
    "Membership tier: the smart-charging priority (standard < member < fleet < priority, "
    "`smart_charging.priority.MEMBERSHIP_TIERS`)"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class IdTokenBase(BaseModel):
    token_type: TokenType = Field(default="RFID", description=TYPE_DESCRIPTION)
    status: Status = Field(default="Accepted", description=STATUS_DESCRIPTION)
    expiry_date: Timestamp | None = Field(
        default=None, description="After this it is answered Expired (null: never)"
    )
    parent_id_tag: ParentTag | None = None
    customer_ref: Reference | None = Field(
        default=None, description="The customer in the operator's own records"
    )
    customer_group: Reference | None = Field(
        default=None, description="Tariff customer group (tariff assignments)"
    )
    membership_tier: Tier = Field(default="standard", description=TIER_DESCRIPTION)


class IdTokenCreate(IdTokenBase, _Body):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"id_tag": "RFID-0001", "customer_ref": "ACME"}]},
    )

    id_tag: str = Field(pattern=ID_TOKEN_PATTERN, description="The token as stations send it")


class IdTokenUpdate(_Body):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"status": "Blocked"}]}
    )

    token_type: TokenType | SkipJsonSchema[None] = Field(default=None, description=TYPE_DESCRIPTION)
    status: Status | SkipJsonSchema[None] = Field(default=None, description=STATUS_DESCRIPTION)
    expiry_date: Timestamp | None = Field(default=None, description="null: never expires")
    parent_id_tag: ParentTag | None = None
    customer_ref: Reference | None = None
    customer_group: Reference | None = None
    membership_tier: Tier | SkipJsonSchema[None] = Field(default=None, description=TIER_DESCRIPTION)


class IdTokenPublic(IdTokenBase):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id_tag": EXAMPLE_ID_TAG,
                    "token_type": "RFID",
                    "status": "Accepted",
                    "membership_tier": "standard",
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )

    id_tag: str
    expiry_date: datetime | None = None
    created_at: datetime
    updated_at: datetime


class IdTokensPage(BaseModel):
    items: list[IdTokenPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )
