"""Live site load against capacity and per-connector load series (operator,
maintenance, admin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from api.deps import DbConn, OperationsReader
from api.params import (
    TIMESTAMP_DESCRIPTION,
    ChargePointPath,
    ConnectorPath,
    SitePath,
    Timestamp,
    range_error,
    require_ordered,
)
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.schemas.load import LoadPointPublic, LoadSeriesPublic, SiteLoadPublic
from store import load as load_store

router = APIRouter(prefix="/v1/load", tags=["load"], responses=AUTHENTICATED)

BUCKET = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
DEFAULT_SPAN = {"1m": timedelta(hours=1), "1h": timedelta(days=1), "1d": timedelta(days=31)}


@router.get(
    "/sites/{site_id}",
    response_model=SiteLoadPublic,
    summary="A site's live load against its capacity",
    responses=NOT_FOUND,
)
async def site_load(
    site_id: SitePath, _principal: OperationsReader, conn: DbConn
) -> SiteLoadPublic:
    record = await load_store.site_load(conn, site_id)
    if record is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"site {site_id!r} not found")
    return SiteLoadPublic.model_validate(record)


@router.get(
    "/connectors/{charge_point_id}/{connector_id}",
    response_model=LoadSeriesPublic,
    summary="Load of one connector per minute, hour or day",
    description="`1m` from the flow's 1-minute table, `1h`/`1d` from the aggregates; "
    "buckets overlapping [from, to), UTC. `from` must be earlier than `to` and "
    f"the range at most {load_store.MAX_POINTS} buckets long (else 422). "
    "Default range: the last hour (1m), day (1h) or 31 days (1d) before `to` "
    "(default now), or that long after `from` when only `from` is given.",
)
async def connector_load(
    charge_point_id: ChargePointPath,
    connector_id: ConnectorPath,
    _principal: OperationsReader,
    conn: DbConn,
    resolution: Annotated[Literal["1m", "1h", "1d"], Query(description="Bucket size")] = "1m",
    start: Annotated[
        Timestamp | None,
        Query(alias="from", description=f"Start of the range. {TIMESTAMP_DESCRIPTION}"),
    ] = None,
    end: Annotated[
        Timestamp | None,
        Query(
            alias="to",
            description=f"End of the range, exclusive. {TIMESTAMP_DESCRIPTION}",
        ),
    ] = None,
) -> LoadSeriesPublic:
    require_ordered(start, end)
    span = DEFAULT_SPAN[resolution]
    if start is None:
        end = end or datetime.now(UTC)
        start = end - span
    elif end is None:
        end = start + span
    if (end - start) / BUCKET[resolution] > load_store.MAX_POINTS:
        raise range_error(f"range too long: at most {load_store.MAX_POINTS} buckets", "to")
    points = await load_store.connector_series(
        conn, charge_point_id, connector_id, resolution, start, end
    )
    return LoadSeriesPublic(
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        resolution=resolution,
        points=[LoadPointPublic.model_validate(p) for p in points],
    )
