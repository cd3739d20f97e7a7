"""The audit log of every write through the API (``api.audit`` records them), newest
first. Role admin."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AuditReader, DbConn
from api.params import (
    PATH_ID_PATTERN,
    PositionCursor,
    Since,
    Until,
    cursor_after,
    next_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED
from api.schemas.audit import AuditPage, AuditPublic
from store import audit
from store.audit import Outcome

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=AUTHENTICATED)


class WriteMethod(StrEnum):
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


@router.get(
    "",
    response_model=AuditPage,
    summary="The audit log of writes, newest first",
    description="Every POST, PUT, PATCH and DELETE answered (any status, also without a "
    "valid key): who (API key id, role), what (method, route template, its parameters, "
    "the body's size and field names - never its values), when, and the status. Filters "
    "combine (AND). `since` must be earlier than `until` (else 422). Pages are walked "
    "with `cursor` = the previous page's `next_cursor`.",
)
async def list_audit(
    _principal: AuditReader,
    conn: DbConn,
    api_key_id: Annotated[
        str | None,
        Query(max_length=64, pattern=PATH_ID_PATTERN, description="Only this API key's writes"),
    ] = None,
    since: Since = None,
    until: Until = None,
    method: Annotated[WriteMethod | None, Query(description="Only this method")] = None,
    path_prefix: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            pattern=r"^/[^\u0000-\u001f\u007f-\u009f]*$",
            description="Only routes (templates) starting with this, e.g. `/v1/stations`",
        ),
    ] = None,
    outcome: Annotated[
        Outcome | None, Query(description="success (< 400), client_error (4xx), server_error")
    ] = None,
    cursor: PositionCursor = None,
    limit: Annotated[
        int, Query(ge=1, le=audit.MAX_LIMIT, description="Page size")
    ] = audit.DEFAULT_LIMIT,
) -> AuditPage:
    require_ordered(since, until, ("since", "until"))
    filters = audit.AuditFilter(
        api_key_id, since, until, None if method is None else str(method), path_prefix, outcome
    )
    page = await audit.list_audit(conn, filters, after=cursor_after(cursor), limit=limit)
    return AuditPage(
        items=[AuditPublic(**asdict(e)) for e in page.items],
        next_cursor=next_cursor(page.next_after),
    )
