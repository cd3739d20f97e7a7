"""Connector availability (every role, including public: drivers look for a free
connector) and per-station status history (operator, maintenance, admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentPrincipal, DbConn, OperationsReader
from api.params import (
    TIMESTAMP_DESCRIPTION,
    ChargePointPath,
    ConnectorFilter,
    SiteFilter,
    StationId,
    Timestamp,
    require_ordered,
)
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.schemas.availability import (
    AvailabilityList,
    AvailabilityPublic,
    AvailabilityStatus,
    StatusChangePublic,
    StatusHistoryPublic,
)
from store import stations
from store import status as status_store
from store.api_keys import Role

router = APIRouter(prefix="/v1", tags=["availability"], responses=AUTHENTICATED)


@router.get(
    "/availability",
    response_model=AvailabilityList,
    summary="Current availability per connector",
    description="Every role may read this. `status` is the connector's last status, or "
    "`Offline` while its station is disconnected. Error codes are hidden from "
    "the public role.",
)
async def list_availability(
    principal: CurrentPrincipal,
    conn: DbConn,
    station: StationId = None,
    site: SiteFilter = None,
    connector_status: Annotated[
        AvailabilityStatus | None, Query(alias="status", description="Only this status")
    ] = None,
) -> AvailabilityList:
    records = await status_store.list_availability(
        conn, station=station, site=site, status=connector_status
    )
    public = principal.role == Role.PUBLIC
    return AvailabilityList(
        items=[
            AvailabilityPublic(
                charge_point_id=r.charge_point_id,
                connector_id=r.connector_id,
                site_id=r.site_id,
                status=r.status,
                available=r.status == "Available",
                connector_status=r.connector_status,
                error_code=None if public else r.error_code,
                status_at=r.status_at,
                online=r.online,
                connection_changed_at=r.connection_changed_at,
            )
            for r in records
        ]
    )


@router.get(
    "/stations/{charge_point_id}/status-history",
    response_model=StatusHistoryPublic,
    summary="Connector status changes of one station, newest first",
    description="Every status the connectors reported, plus the station's offline "
    "periods: an `Offline` row per connector when the station went offline "
    "and, when it came back, a row with the connector's status then (both "
    "with a `reason`). `from` must be earlier than `to` (else 422). "
    "Operator, maintenance and admin roles.",
    responses=NOT_FOUND,
)
async def status_history(
    charge_point_id: ChargePointPath,
    _principal: OperationsReader,
    conn: DbConn,
    start: Annotated[
        Timestamp | None,
        Query(
            alias="from",
            description=f"At or after this time, earlier than `to`. {TIMESTAMP_DESCRIPTION}",
        ),
    ] = None,
    end: Annotated[
        Timestamp | None,
        Query(alias="to", description=f"Before this time. {TIMESTAMP_DESCRIPTION}"),
    ] = None,
    connector: ConnectorFilter = None,
    limit: Annotated[int, Query(ge=1, le=status_store.MAX_HISTORY)] = 100,
) -> StatusHistoryPublic:
    require_ordered(start, end)
    if not await stations.station_exists(conn, charge_point_id):
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"station {charge_point_id!r} not found")
    records = await status_store.status_history(
        conn, charge_point_id, start=start, end=end, connector_id=connector, limit=limit
    )
    return StatusHistoryPublic(
        charge_point_id=charge_point_id,
        items=[StatusChangePublic.model_validate(r) for r in records],
    )
