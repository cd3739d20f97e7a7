"""Charging sessions (read-only): roles billing, operator, admin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import DbConn, SessionReader
from api.models import ErrorPublic, SessionPublic, SessionsPage
from store import queries

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorPublic, "description": "missing, invalid or revoked API key"},
    403: {"model": ErrorPublic, "description": "the key's role may not read sessions"},
}


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # documented: naive timestamps are UTC
        return value.replace(tzinfo=UTC)
    return value


@router.get(
    "",
    response_model=SessionsPage,
    summary="List sessions, newest first",
    responses={**AUTH_ERRORS, 400: {"model": ErrorPublic, "description": "bad cursor or range"}},
)
async def list_sessions(
    conn: DbConn,
    _principal: SessionReader,
    station: Annotated[
        str | None, Query(max_length=64, description="Only this charge point id")
    ] = None,
    started_from: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="Sessions started at or after this ISO 8601 time (naive = UTC)",
        ),
    ] = None,
    started_to: Annotated[
        datetime | None,
        Query(alias="to", description="Sessions started before this ISO 8601 time (naive = UTC)"),
    ] = None,
    session_status: Annotated[
        Literal["active", "closed"] | None, Query(alias="status")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=queries.MAX_LIMIT, description="Page size")
    ] = queries.DEFAULT_LIMIT,
) -> SessionsPage:
    start, end = _as_utc(started_from), _as_utc(started_to)
    if start is not None and end is not None and start >= end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "'from' must be earlier than 'to'")
    filters = queries.SessionFilter(
        charge_point_id=station, started_from=start, started_to=end, status=session_status
    )
    try:
        page = await queries.list_sessions(conn, filters, cursor=cursor, limit=limit)
    except queries.InvalidCursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return SessionsPage(
        items=[SessionPublic.model_validate(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{session_id}",
    response_model=SessionPublic,
    summary="One session",
    responses={**AUTH_ERRORS, 404: {"model": ErrorPublic, "description": "no such session"}},
)
async def get_session(
    session_id: uuid.UUID, conn: DbConn, _principal: SessionReader
) -> SessionPublic:
    record = await queries.get_session(conn, session_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    return SessionPublic.model_validate(record)
