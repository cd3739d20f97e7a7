"""A station's OCPP message history, newest first: the CALLs it sent (with the answer
the gateway gave; ``flows.messages`` keeps them for ``CHARGEFLOW_MESSAGES_RETENTION_DAYS``)
and the commands the CSMS sent it (with its answers). Roles operator, maintenance,
admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import Field

from api.deps import DbConn, OperationsReader
from api.params import (
    ChargePointPath,
    PositionCursor,
    Since,
    Until,
    cursor_after,
    next_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.routers.commands import json_numbers
from api.schemas.commands import ACTION_PATTERN
from api.schemas.messages import MessagePublic, MessagesPage
from store import messages, stations
from store.messages import Direction, MessageRecord

router = APIRouter(prefix="/v1/stations", tags=["messages"], responses=AUTHENTICATED)

MAX_ACTIONS = 20
Action = Annotated[str, Field(pattern=ACTION_PATTERN)]


def message_public(station_id: str, record: MessageRecord) -> MessagePublic:
    return MessagePublic(
        message_id=record.message_id,
        station_id=station_id,
        direction=record.direction,
        at=record.at,
        action=record.action,
        ocpp_version=record.ocpp_version,
        unique_id=record.unique_id,
        payload=json_numbers(record.payload),
        response=json_numbers(record.response),
        status=record.status,
        error=record.error,
        completed_at=record.completed_at,
    )


@router.get(
    "/{station_id}/messages",
    response_model=MessagesPage,
    summary="The station's OCPP messages, newest first",
    description="The CALLs the station sent (`station_to_csms`, with the CSMS's answer) "
    "and the commands sent to it (`csms_to_station`, with the station's answer and the "
    "command's status), in one history. Filters combine (AND); `action` may repeat (any "
    "of them). `since` must be earlier than `until` (else 422). Pages are walked with "
    "`cursor` = the previous page's `next_cursor`. Secrets in payloads (passwords, "
    "authorization keys) are masked. 404 for a station that is not provisioned.",
    responses=NOT_FOUND,
)
async def list_station_messages(
    station_id: ChargePointPath,
    _principal: OperationsReader,
    conn: DbConn,
    action: Annotated[
        list[Action] | None,
        Query(max_length=MAX_ACTIONS, description="Only these OCPP actions (repeatable)"),
    ] = None,
    direction: Annotated[Direction | None, Query(description="Only this direction")] = None,
    since: Since = None,
    until: Until = None,
    cursor: PositionCursor = None,
    limit: Annotated[
        int, Query(ge=1, le=messages.MAX_LIMIT, description="Page size")
    ] = messages.DEFAULT_LIMIT,
) -> MessagesPage:
    require_ordered(since, until, ("since", "until"))
    if not await stations.station_exists(conn, station_id):
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"station {station_id!r} not found")
    filters = messages.MessageFilter(station_id, tuple(action or ()), direction, since, until)
    page = await messages.list_messages(conn, filters, after=cursor_after(cursor), limit=limit)
    return MessagesPage(
        items=[message_public(station_id, r) for r in page.items],
        next_cursor=next_cursor(page.next_after),
    )
