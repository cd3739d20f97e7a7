"""Smart meters read over MQTT (docs/registry.md): which station connector each
measures, its role (connector, the station as a whole, other load) and whether it bills.
The meter bridge learns a new meter at its next look-up of the id (an unknown id is
remembered ``unknown_ttl_s``) and a change once its cache entry expires. Write:
operator, admin; read: operator, maintenance, admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import DbConn, RegistryReader, RegistryWriter
from api.params import RegistryLimit, SiteFilter, id_cursor, patch_changes
from api.problems import (
    AUTHENTICATED,
    CONFLICT,
    NOT_FOUND,
    UNREADABLE_BODY,
    found,
    registry_problems,
)
from api.schemas.meters import METER_ID_PATTERN, MeterCreate, MeterPublic, MetersPage, MeterUpdate
from api.schemas.stations import STATION_ID_PATTERN
from ingest.meters.config import DEFAULT_TOPIC_PATTERN
from store import meters as meter_store
from store import registry

router = APIRouter(prefix="/v1/meters", tags=["registry"], responses=AUTHENTICATED)

EXAMPLE_METER = "MTR-CP-1-1"
MeterPath = Annotated[
    str, Path(pattern=METER_ID_PATTERN, description="The meter's id", examples=[EXAMPLE_METER])
]


def _public(record: meter_store.MeterRecord) -> MeterPublic:
    return MeterPublic(
        meter_id=record.meter_id,
        charge_point_id=record.charge_point_id,
        connector_id=record.connector_id,
        role=record.role,
        is_billing_meter=record.is_billing_meter,
        mqtt_topic=DEFAULT_TOPIC_PATTERN.replace("+", record.meter_id),
        created_at=record.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MeterPublic,
    summary="Register a smart meter",
    description="409 when the id exists or the connector has a billing meter already; "
    "422 for an unknown station or a connector that does not fit the role.",
    responses={**CONFLICT, **UNREADABLE_BODY},
)
async def create_meter(body: MeterCreate, _principal: RegistryWriter, conn: DbConn) -> MeterPublic:
    with registry_problems():
        record = await meter_store.create_meter(conn, body.meter_id, body.model_dump())
    return _public(record)


@router.get("", response_model=MetersPage, summary="List smart meters, by id")
async def list_meters(
    _principal: RegistryReader,
    conn: DbConn,
    station: Annotated[
        str | None, Query(pattern=STATION_ID_PATTERN, description="Only this station's")
    ] = None,
    site: SiteFilter = None,
    cursor: Annotated[str | None, id_cursor(METER_ID_PATTERN)] = None,
    limit: RegistryLimit = registry.DEFAULT_LIMIT,
) -> MetersPage:
    page = await meter_store.list_meter_page(
        conn, charge_point_id=station, site_id=site, after=cursor, limit=limit
    )
    return MetersPage(items=[_public(m) for m in page.items], next_cursor=page.next_after)


@router.get("/{meter_id}", response_model=MeterPublic, summary="One meter", responses=NOT_FOUND)
async def get_meter(meter_id: MeterPath, _principal: RegistryReader, conn: DbConn) -> MeterPublic:
    record = found(await meter_store.get_meter(conn, meter_id), f"meter {meter_id!r}")
    return _public(record)


@router.patch(
    "/{meter_id}",
    response_model=MeterPublic,
    summary="Move a meter or change its role or billing",
    description="Only the fields sent change; the result must still fit (as for POST).",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def update_meter(
    meter_id: MeterPath, body: MeterUpdate, _principal: RegistryWriter, conn: DbConn
) -> MeterPublic:
    changes = patch_changes(
        body, not_null=("charge_point_id", "connector_id", "role", "is_billing_meter")
    )
    with registry_problems():
        record = await meter_store.update_meter(conn, meter_id, changes)
    return _public(record)


@router.delete(
    "/{meter_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a meter (idempotent: 204 whether it existed or not)",
    description="The bridge dead-letters its readings once its cache entry expires.",
)
async def delete_meter(meter_id: MeterPath, _principal: RegistryWriter, conn: DbConn) -> Response:
    await meter_store.delete_meter(conn, meter_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
