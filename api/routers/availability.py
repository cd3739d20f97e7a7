"""Connector availability (every role, including public: drivers look for a free
connector) and per-station status history (operator, maintenance, admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import CurrentPrincipal, DbConn, require_roles
from api.load_models import (
    AvailabilityList,
    AvailabilityPublic,
    AvailabilityStatus,
    StatusChangePublic,
    StatusHistoryPublic,
)
from api.models import ErrorPublic
from store import load_queries
from store.apikeys import ApiPrincipal, Role

router = APIRouter(prefix="/v1", tags=["availability"])

StatusReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.MAINTENANCE, Role.ADMIN))
]
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorPublic, "description": "missing, invalid or revoked API key"},
    403: {"model": ErrorPublic, "description": "the key's role may not read this"},
}


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get(
    "/availability",
    response_model=AvailabilityList,
    summary="Current availability per connector",
    description="Every role may read this. `status` is the connector's last status, or "
                "`Offline` while its station is disconnected. Error codes are hidden from "
                "the public role.",
    responses={401: AUTH_ERRORS[401]},
)
async def list_availability(
    conn: DbConn,
    principal: CurrentPrincipal,
    station: Annotated[str | None, Query(max_length=64, description="Charge point id")] = None,
    site: Annotated[str | None, Query(max_length=64, description="Site id")] = None,
    connector_status: Annotated[
        AvailabilityStatus | None, Query(alias="status", description="Only this status")
    ] = None,
) -> AvailabilityList:
    records = await load_queries.list_availability(
        conn, station=station, site=site, status=connector_status)
    public = principal.role == Role.PUBLIC
    return AvailabilityList(items=[
        AvailabilityPublic(
            charge_point_id=r.charge_point_id, connector_id=r.connector_id, site_id=r.site_id,
            status=r.status, available=r.status == "Available",
            connector_status=r.connector_status,
            error_code=None if public else r.error_code, status_at=r.status_at,
            online=r.online, connection_changed_at=r.connection_changed_at,
        )
        for r in records
    ])


@router.get(
    "/stations/{charge_point_id}/status-history",
    response_model=StatusHistoryPublic,
    summary="Connector status changes of one station, newest first",
    description="Every status the connectors reported, plus the station's offline "
                "periods: an `Offline` row per connector when the station went offline "
                "and, when it came back, a row with the connector's status then (both "
                "with a `reason`). Operator, maintenance and admin roles.",
    responses={**AUTH_ERRORS, 400: {"model": ErrorPublic, "description": "bad range"},
               404: {"model": ErrorPublic, "description": "unknown station"}},
)
async def status_history(
    charge_point_id: str,
    conn: DbConn,
    _principal: StatusReader,
    start: Annotated[datetime | None, Query(
        alias="from", description="At or after this ISO 8601 time (naive = UTC)")] = None,
    end: Annotated[datetime | None, Query(
        alias="to", description="Before this ISO 8601 time (naive = UTC)")] = None,
    connector: Annotated[int | None, Query(ge=0, description="Only this connector")] = None,
    limit: Annotated[int, Query(ge=1, le=load_queries.MAX_HISTORY)] = 100,
) -> StatusHistoryPublic:
    start, end = _as_utc(start), _as_utc(end)
    if start is not None and end is not None and start >= end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "'from' must be earlier than 'to'")
    if not await load_queries.station_exists(conn, charge_point_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"station {charge_point_id!r} not found")
    records = await load_queries.status_history(
        conn, charge_point_id, start=start, end=end, connector_id=connector, limit=limit)
    return StatusHistoryPublic(
        charge_point_id=charge_point_id,
        items=[StatusChangePublic.model_validate(r) for r in records],
    )
