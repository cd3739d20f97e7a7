"""Fault and security alerts: list, one with its history, acknowledge and resolve
(audited: the API key's name is the actor). Roles maintenance, operator, admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from api.deps import AlertHandler, DbConn
from api.params import (
    TIMESTAMP_DESCRIPTION,
    AlertCursor,
    AlertCursorPosition,
    AlertIdPath,
    SiteFilter,
    StationId,
    Timestamp,
    decode_alert_cursor,
    encode_alert_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.alerts import (
    AlertActionCreate,
    AlertDetailPublic,
    AlertEventPublic,
    AlertPublic,
    AlertsPage,
)
from bus.alerts import AlertKind, AlertStatus, Severity
from store import alerts as alert_store

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=AUTHENTICATED)

ACTION_BODY = Annotated[
    AlertActionCreate | None,
    Body(description="Optional: a note for the audit trail"),
]


@router.get(
    "",
    response_model=AlertsPage,
    summary="List alerts, newest first_seen first",
    description="Filters combine (AND). `since` must be earlier than `until` (else 422). "
    "Pages are walked with `cursor` = the previous page's `next_cursor`.",
)
async def list_alerts(
    _principal: AlertHandler,
    conn: DbConn,
    station: StationId = None,
    site: SiteFilter = None,
    kind: Annotated[AlertKind | None, Query(description="Only this kind")] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity")] = None,
    alert_status: Annotated[
        AlertStatus | None, Query(alias="status", description="Only this status")
    ] = None,
    since: Annotated[
        Timestamp | None,
        Query(
            description=f"first_seen at or after this time, earlier than `until`. "
            f"{TIMESTAMP_DESCRIPTION}"
        ),
    ] = None,
    until: Annotated[
        Timestamp | None,
        Query(description=f"first_seen before this time. {TIMESTAMP_DESCRIPTION}"),
    ] = None,
    cursor: AlertCursor = None,
    limit: Annotated[
        int, Query(ge=1, le=alert_store.MAX_LIMIT, description="Page size")
    ] = alert_store.DEFAULT_LIMIT,
) -> AlertsPage:
    require_ordered(since, until, ("since", "until"))
    filters = alert_store.AlertFilter(
        station_id=station,
        site_id=site,
        kind=kind,
        severity=severity,
        status=alert_status,
        since=since,
        until=until,
    )
    after = None
    if cursor is not None:
        position = decode_alert_cursor(cursor)
        after = alert_store.AlertPosition(position.first_seen, position.alert_id)
    page = await alert_store.list_alerts(conn, filters, after=after, limit=limit)
    next_cursor = None
    if page.next_after is not None:
        next_cursor = encode_alert_cursor(
            AlertCursorPosition(page.next_after.first_seen, page.next_after.alert_id)
        )
    return AlertsPage(
        items=[AlertPublic.model_validate(item) for item in page.items],
        next_cursor=next_cursor,
    )


@router.get(
    "/{alert_id}",
    response_model=AlertDetailPublic,
    summary="One alert with its history",
    description="`history`: every version the faults flow published (with its evidence) "
    "and every acknowledge/resolve by a person (actor, note), oldest first.",
    responses=NOT_FOUND,
)
async def get_alert(
    alert_id: AlertIdPath, _principal: AlertHandler, conn: DbConn
) -> AlertDetailPublic:
    record = await alert_store.get_alert(conn, alert_id)
    if record is None:
        raise _not_found(alert_id)
    history = await alert_store.alert_history(conn, alert_id)
    return AlertDetailPublic(
        **AlertPublic.model_validate(record).model_dump(),
        history=[_event(e) for e in history],
    )


def _event(event: alert_store.AlertEventRecord) -> AlertEventPublic:
    fields: dict[str, Any] = {
        name: getattr(event, name) for name in AlertEventPublic.model_fields if name != "source"
    }
    return AlertEventPublic(source="flow" if event.version_key else "person", **fields)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertPublic,
    summary="Acknowledge an alert (someone is on it)",
    description="open -> acknowledged, recorded in the alert's history with the API key's "
    "name and the note. Acknowledging an acknowledged alert changes nothing (no second "
    "history entry; the note of the repeat is not stored) and answers its current state; "
    "a resolved alert answers 409. Later versions from the faults flow keep it "
    "acknowledged.",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def acknowledge_alert(
    alert_id: AlertIdPath, principal: AlertHandler, conn: DbConn, body: ACTION_BODY = None
) -> AlertPublic:
    return await _act(conn, alert_id, "acknowledge", principal.name, body)


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertPublic,
    summary="Resolve an alert (fixed or not a fault)",
    description="-> resolved, with `resolved_at` (now) and `resolved_by` (the API key's "
    "name), recorded in the history with the note. Final: later versions from the faults "
    "flow keep it resolved. Resolving an alert a person resolved changes nothing (no "
    "second history entry) and answers its current state; an alert the faults flow "
    "resolved itself gets `resolved_by` and a history entry, its `resolved_at` is kept.",
    responses={**NOT_FOUND, **UNREADABLE_BODY},
)
async def resolve_alert(
    alert_id: AlertIdPath, principal: AlertHandler, conn: DbConn, body: ACTION_BODY = None
) -> AlertPublic:
    return await _act(conn, alert_id, "resolve", principal.name, body)


async def _act(
    conn: DbConn,
    alert_id: str,
    action: alert_store.AlertAction,
    actor: str,
    body: AlertActionCreate | None,
) -> AlertPublic:
    note = body.note if body is not None else None
    try:
        record = await alert_store.act_on_alert(conn, alert_id, action, actor=actor, note=note)
    except alert_store.AlertConflictError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    if record is None:
        raise _not_found(alert_id)
    return AlertPublic.model_validate(record)


def _not_found(alert_id: str) -> ProblemError:
    return ProblemError(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
