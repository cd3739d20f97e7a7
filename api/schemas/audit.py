"""The audit log of the API's writes: ``AuditPublic`` (one write, its outcome) and its
page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.params import CURSOR_PATTERN


class AuditPublic(BaseModel):
    audit_id: uuid.UUID
    at: datetime = Field(description="When the write was answered")
    api_key_id: str | None = Field(description="The API key's id; null without a valid key")
    role: str | None = Field(description="The key's role; null without a valid key")
    method: str
    route: str = Field(description="The route template (`/v1/stations/{station_id}/...`)")
    path_params: dict[str, str] = Field(description="The route's parameters: what was written")
    summary: dict[str, Any] = Field(
        description="The body without its values: `bytes`, `media_type`, `fields` (top-level "
        "field names of a JSON object)"
    )
    status: int = Field(description="The status code answered")
    client: str | None = Field(description="The peer's address")
    duration_ms: float


class AuditPage(BaseModel):
    items: list[AuditPublic]
    next_cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` for the next page; null on the last page",
    )
