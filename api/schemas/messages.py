"""A station's OCPP message history: ``MessagePublic`` (a CALL the station sent with
the gateway's answer, or a command the CSMS sent with the station's answer) and its
page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.params import CURSOR_PATTERN
from store.messages import Direction


class MessagePublic(BaseModel):
    message_id: str = Field(
        description="The envelope's id (station_to_csms) or the command's id (csms_to_station)"
    )
    station_id: str
    direction: Direction = Field(
        description="station_to_csms: a CALL the station sent, `response` the CSMS's answer; "
        "csms_to_station: a command, `response` the station's answer"
    )
    at: datetime = Field(
        description="When the gateway received the CALL, or when the command was requested"
    )
    action: str | None = Field(description="The OCPP action")
    ocpp_version: str | None
    unique_id: str | None = Field(description="The OCPP-J message id of a station's CALL")
    payload: dict[str, Any] = Field(description="The CALL's payload (secrets masked: ***)")
    response: dict[str, Any] | None = Field(description="The answer (secrets masked: ***)")
    status: str | None = Field(description="A command's status (null for a station's CALL)")
    error: str | None = Field(description="Why a command did not succeed, in words")
    completed_at: datetime | None = Field(description="When a command got its outcome")


class MessagesPage(BaseModel):
    items: list[MessagePublic]
    next_cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` for the next page; null on the last page",
    )
