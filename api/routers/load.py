"""Live site load against capacity and per-connector load series (operator,
maintenance, admin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import DbConn, require_roles
from api.load_models import LoadPointPublic, LoadSeriesPublic, SiteLoadPublic
from api.models import ErrorPublic
from store import load_queries
from store.apikeys import ApiPrincipal, Role

router = APIRouter(prefix="/v1/load", tags=["load"])

LoadReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.MAINTENANCE, Role.ADMIN))
]
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorPublic, "description": "missing, invalid or revoked API key"},
    403: {"model": ErrorPublic, "description": "the key's role may not read load"},
}
BUCKET = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
DEFAULT_SPAN = {"1m": timedelta(hours=1), "1h": timedelta(days=1), "1d": timedelta(days=31)}


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get(
    "/sites/{site_id}",
    response_model=SiteLoadPublic,
    summary="A site's live load against its capacity",
    responses={**AUTH_ERRORS, 404: {"model": ErrorPublic, "description": "unknown site"}},
)
async def site_load(site_id: str, conn: DbConn, _principal: LoadReader) -> SiteLoadPublic:
    record = await load_queries.site_load(conn, site_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id!r} not found")
    return SiteLoadPublic.model_validate(record)


@router.get(
    "/connectors/{charge_point_id}/{connector_id}",
    response_model=LoadSeriesPublic,
    summary="Load of one connector per minute, hour or day",
    description="`1m` from the flow's 1-minute table, `1h`/`1d` from the aggregates; "
                "buckets overlapping [from, to), UTC. Default range: the last hour (1m), "
                "day (1h) or 31 days (1d) before `to` (default now).",
    responses={**AUTH_ERRORS, 400: {"model": ErrorPublic, "description": "bad range"}},
)
async def connector_load(
    charge_point_id: str,
    connector_id: int,
    conn: DbConn,
    _principal: LoadReader,
    resolution: Literal["1m", "1h", "1d"] = "1m",
    start: Annotated[datetime | None, Query(
        alias="from", description="Start of the range (naive = UTC)")] = None,
    end: Annotated[datetime | None, Query(
        alias="to", description="End of the range, exclusive (naive = UTC)")] = None,
) -> LoadSeriesPublic:
    end = _as_utc(end) or datetime.now(UTC)
    start = _as_utc(start) or end - DEFAULT_SPAN[resolution]
    if start >= end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "'from' must be earlier than 'to'")
    if (end - start) / BUCKET[resolution] > load_queries.MAX_POINTS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"range too long: at most {load_queries.MAX_POINTS} buckets")
    points = await load_queries.connector_series(
        conn, charge_point_id, connector_id, resolution, start, end)
    return LoadSeriesPublic(
        charge_point_id=charge_point_id, connector_id=connector_id, resolution=resolution,
        points=[LoadPointPublic.model_validate(p) for p in points],
    )
