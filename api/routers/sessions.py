"""Charging sessions (read-only): roles billing, operator, admin."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from api.deps import DbConn, SessionReader
from api.params import (
    EXAMPLE_SESSION_ID,
    TIMESTAMP_DESCRIPTION,
    Cursor,
    CursorPosition,
    StationId,
    Timestamp,
    decode_api_cursor,
    encode_api_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.schemas.sessions import SessionPublic, SessionsPage
from store import sessions as session_store

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=AUTHENTICATED)


@router.get(
    "",
    response_model=SessionsPage,
    summary="List sessions, newest first",
    description="`from` must be earlier than `to` (else 422). Pages are walked with "
    "`cursor` = the previous page's `next_cursor`.",
)
async def list_sessions(
    _principal: SessionReader,
    conn: DbConn,
    station: StationId = None,
    started_from: Annotated[
        Timestamp | None,
        Query(
            alias="from",
            description=f"Sessions started at or after this time, earlier than `to`. "
            f"{TIMESTAMP_DESCRIPTION}",
        ),
    ] = None,
    started_to: Annotated[
        Timestamp | None,
        Query(
            alias="to", description=f"Sessions started before this time. {TIMESTAMP_DESCRIPTION}"
        ),
    ] = None,
    session_status: Annotated[Literal["active", "closed"] | None, Query(alias="status")] = None,
    cursor: Cursor = None,
    limit: Annotated[
        int, Query(ge=1, le=session_store.MAX_LIMIT, description="Page size")
    ] = session_store.DEFAULT_LIMIT,
) -> SessionsPage:
    require_ordered(started_from, started_to)
    filters = session_store.SessionFilter(
        charge_point_id=station,
        started_from=started_from,
        started_to=started_to,
        status=session_status,
    )
    after = None
    if cursor is not None:
        position = decode_api_cursor(cursor)
        after = session_store.encode_cursor(position.started_at, position.session_id)
    page = await session_store.list_sessions(conn, filters, cursor=after, limit=limit)
    next_cursor = None
    if page.next_cursor is not None:
        next_cursor = encode_api_cursor(
            CursorPosition(*session_store.decode_cursor(page.next_cursor))
        )
    return SessionsPage(
        items=[SessionPublic.model_validate(item) for item in page.items],
        next_cursor=next_cursor,
    )


@router.get(
    "/{session_id}",
    response_model=SessionPublic,
    summary="One session",
    responses=NOT_FOUND,
)
async def get_session(
    session_id: Annotated[
        uuid.UUID, Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)])
    ],
    _principal: SessionReader,
    conn: DbConn,
) -> SessionPublic:
    record = await session_store.get_session(conn, session_id)
    if record is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    return SessionPublic.model_validate(record)
