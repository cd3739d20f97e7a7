"""Remote commands: one with its outcome (optionally waiting for it), a filtered list,
and the status changes as server-sent events. Roles operator, admin. Commands are
queued by ``/v1/stations/{id}/commands/...`` (``api.routers.station_commands``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from api.command_changes import CommandChanges
from api.command_watch import LINK_STEPS, Until, follow, history, latest
from api.deps import CommandOperator, DbConn, DbPool
from api.params import (
    EXAMPLE_COMMAND_ID,
    TIMESTAMP_DESCRIPTION,
    StationId,
    Timestamp,
    cursor_after,
    next_cursor,
    position_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.schemas.commands import ACTION_PATTERN, CommandPublic, CommandsPage
from bus.commands import CommandStatus
from store import command_queue
from store.commands import CommandRecord, get_command
from store.remote_start_links import with_sessions

router = APIRouter(prefix="/v1/commands", tags=["commands"], responses=AUTHENTICATED)

CommandIdPath = Annotated[
    uuid.UUID, Path(description="The command's id", examples=[EXAMPLE_COMMAND_ID])
]
MAX_WAIT_S = 30
MAX_STREAM_S = 300
WaitFor = Annotated[
    Until,
    Query(
        alias="wait_for",
        description="outcome: until the final status; session: for an accepted remote "
        "start, until its session is known too (transaction_id and session_id set)",
    ),
]
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": [*(str(s) for s in CommandStatus), *LINK_STEPS]},
        "id": {"type": "string", "pattern": "^[1-5]$", "description": "The step's number"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "JSON: command_id, status (the step: a status, or transaction / "
            "session for a remote start's link), at (when the step happened; for the link "
            "steps when the gateway linked the transaction) and command (as it is now)",
        },
    },
}


def json_numbers(value: Any) -> Any:
    """Stored payloads keep exact decimals (``Decimal``); JSON shows them as numbers
    (pydantic would write a ``Decimal`` as a string).

    >>> json_numbers({"a": [Decimal("7400.3"), 1]})
    {'a': [7400.3, 1]}
    """
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return value


def command_public(record: CommandRecord) -> CommandPublic:
    return CommandPublic(
        command_id=record.command_id,
        station_id=record.charge_point_id,
        action=record.action,
        payload=json_numbers(record.payload),
        ocpp_version=record.ocpp_version,
        status=record.status,
        requested_by=record.requested_by,
        created_at=record.requested_at,
        expires_at=record.expires_at,
        sent_at=record.sent_at,
        completed_at=record.completed_at,
        response=json_numbers(record.response),
        error=record.error,
        gateway_id=record.gateway_id,
        transaction_id=record.transaction_id,
        session_id=record.session_id,
    )


def _not_found(command_id: uuid.UUID) -> ProblemError:
    return ProblemError(status.HTTP_404_NOT_FOUND, f"no command {command_id}")


@router.get(
    "",
    response_model=CommandsPage,
    summary="List commands, newest first",
    description="Filters combine (AND). `since` must be earlier than `until` (else 422). "
    "Pages are walked with `cursor` = the previous page's `next_cursor`.",
)
async def list_commands(
    _principal: CommandOperator,
    conn: DbConn,
    station: StationId = None,
    command_status: Annotated[
        CommandStatus | None, Query(alias="status", description="Only this status")
    ] = None,
    action: Annotated[
        str | None, Query(pattern=ACTION_PATTERN, description="Only this OCPP action")
    ] = None,
    since: Annotated[
        Timestamp | None,
        Query(description=f"created at or after this time. {TIMESTAMP_DESCRIPTION}"),
    ] = None,
    until: Annotated[
        Timestamp | None, Query(description=f"created before this time. {TIMESTAMP_DESCRIPTION}")
    ] = None,
    cursor: Annotated[
        str | None,
        position_cursor(
            "<created_at in microseconds since 1970 UTC>-<command_id as 32 hex digits>"
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=command_queue.MAX_LIMIT, description="Page size")
    ] = command_queue.DEFAULT_LIMIT,
) -> CommandsPage:
    require_ordered(since, until, ("since", "until"))
    filters = command_queue.CommandFilter(station, command_status, action, since, until)
    after = cursor_after(cursor)
    page = await command_queue.list_commands(conn, filters, after=after, limit=limit)
    items = await with_sessions(conn, page.items)
    return CommandsPage(
        items=[command_public(r) for r in items], next_cursor=next_cursor(page.next_after)
    )


@router.get(
    "/{command_id}",
    response_model=CommandPublic,
    summary="One command and its outcome",
    description="`wait=N` (0-30 s): answer once the command is final (accepted, rejected, "
    "failed, timed_out, expired, offline) or after N seconds, whichever is first; the "
    "status says which. `wait_for=session`: an accepted remote start is answered once "
    "its session is known (`session_id` set), else after N seconds as it is then.",
    responses=NOT_FOUND,
)
async def get_command_by_id(
    command_id: CommandIdPath,
    _principal: CommandOperator,
    request: Request,
    pool: DbPool,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for a final status")
    ] = 0,
    wait_for: WaitFor = Until.OUTCOME,
) -> CommandPublic:
    timeout = request.app.state.config.pool_timeout_s
    record = await latest(
        pool, request.app.state.command_changes, command_id, wait, timeout, wait_for
    )
    if record is None:
        raise _not_found(command_id)
    return command_public(record)


@router.get(
    "/{command_id}/events",
    response_class=StreamingResponse,
    summary="The command's status changes as server-sent events",
    description="`text/event-stream`: one event per status (`event:` pending, sent, then "
    "the final status; `data:` JSON with `command_id`, `status`, `at` and the command as "
    "it is now), oldest first, each once; the stream closes after the final status (or "
    f"after `timeout` seconds, at most {MAX_STREAM_S}), or at once for a pending command "
    "past its expires_at (no gateway sends it any more).",
    responses={
        200: {
            "description": "The event stream",
            # OpenAPI before 3.2: the schema describes each event.
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
        **NOT_FOUND,
    },
)
async def command_events(
    command_id: CommandIdPath,
    _principal: CommandOperator,
    request: Request,
    pool: DbPool,
    stream_s: Annotated[
        float,
        Query(
            alias="timeout", gt=0, le=MAX_STREAM_S, description="Close the stream after this many s"
        ),
    ] = 60,
    wait_for: WaitFor = Until.OUTCOME,
) -> StreamingResponse:
    pool_timeout = request.app.state.config.pool_timeout_s
    # The pool, not a request-scoped connection: the stream outlives the handler.
    async with pool.connection(timeout=pool_timeout) as conn:
        if await get_command(conn, command_id) is None:
            raise _not_found(command_id)
    return StreamingResponse(
        _events(
            pool, request.app.state.command_changes, command_id, stream_s, pool_timeout, wait_for
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    pool: DbPool,
    changes: CommandChanges,
    command_id: uuid.UUID,
    stream_s: float,
    pool_timeout: float,
    until: Until,
) -> AsyncIterator[str]:
    sent: set[str] = set()
    async for record in follow(pool, changes, command_id, stream_s, pool_timeout, until):
        now = command_public(record).model_dump(mode="json")
        for step, at in history(record, links=until is Until.SESSION):
            if step in sent:
                continue
            sent.add(step)
            data = {"command_id": str(command_id), "status": step, "at": at.isoformat()}
            text = json.dumps({**data, "command": now})
            yield f"event: {step}\nid: {len(sent)}\ndata: {text}\n\n"
