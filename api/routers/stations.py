"""The station registry (docs/registry.md): provision a station (its password generated
and answered once), list and read stations, change their site and security profile,
give a station a new password (answered once), decommission it (soft: the row and its
history stay, the gateway refuses it), and each connector's ratings (what the
smart-charging allocator limits it by). Write: operator, admin; new password and
decommission: admin; read: operator, maintenance, admin.

Passwords are never logged, stored only as argon2 hashes and answered only by the call
that made them (``StationProvisioned``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import DbConn, RegistryAdmin, RegistryReader, RegistryWriter
from api.params import (
    EXAMPLE_RETIRED_STATION,
    ChargePointPath,
    ConnectorPath,
    RegistryLimit,
    SiteFilter,
    id_cursor,
    patch_changes,
    text_id,
)
from api.problems import (
    AUTHENTICATED,
    CONFLICT,
    NOT_FOUND,
    UNREADABLE_BODY,
    found,
    registry_problems,
)
from api.schemas import public_of
from api.schemas.stations import (
    STATION_ID_PATTERN,
    ConnectorPublic,
    ConnectorUpdate,
    StationCreate,
    StationProvisioned,
    StationPublic,
    StationsPage,
    StationUpdate,
)
from store import registry
from store.stations import generate_password, hash_password

router = APIRouter(prefix="/v1/stations", tags=["registry"], responses=AUTHENTICATED)
RetiredPath = Annotated[str, text_id(Path, "Charge point id", EXAMPLE_RETIRED_STATION)]


def station_public(record: registry.StationRecord) -> StationPublic:
    fields: dict[str, Any] = {
        name: getattr(record, name) for name in StationPublic.model_fields if name != "status"
    }
    fields["status"] = "active" if record.decommissioned_at is None else "decommissioned"
    return StationPublic.model_validate(fields)


def _provisioned(
    record: registry.StationRecord, password: str | None, response: Response
) -> StationProvisioned:
    """The answer that carries a password: kept by no cache (RFC 9111 no-store)."""
    response.headers["Cache-Control"] = "no-store"
    return StationProvisioned(**station_public(record).model_dump(), password=password)


async def _new_password() -> tuple[str, str]:
    """(password, its argon2 hash); argon2 runs in a worker thread."""
    password = generate_password()
    return password, await asyncio.to_thread(hash_password, password)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StationProvisioned,
    summary="Provision a station (its password is in this answer only)",
    description="Profiles 1 and 2 get a generated HTTP Basic password (24 characters), "
    "answered here once and stored only as an argon2 hash; profile 0 gets none. 409 when "
    "the id exists (decommissioned ones too: their history keeps the id); 422 for an "
    "unknown site (create it first: POST /v1/sites).",
    responses={**CONFLICT, **UNREADABLE_BODY},
)
async def provision(
    body: StationCreate, _principal: RegistryWriter, conn: DbConn, response: Response
) -> StationProvisioned:
    password, password_hash = (None, None)
    if body.security_profile in (1, 2):
        password, password_hash = await _new_password()
    with registry_problems():
        record = await registry.create_station(
            conn,
            body.charge_point_id,
            site_id=body.site_id,
            security_profile=body.security_profile,
            password_hash=password_hash,
            vendor=body.vendor,
            model=body.model,
        )
    return _provisioned(record, password, response)


@router.get("", response_model=StationsPage, summary="List stations, by id")
async def list_stations(
    _principal: RegistryReader,
    conn: DbConn,
    site: SiteFilter = None,
    station_status: Annotated[
        registry.StationStatus | None,
        Query(alias="status", description="active or decommissioned (omit: both)"),
    ] = None,
    cursor: Annotated[str | None, id_cursor(STATION_ID_PATTERN)] = None,
    limit: RegistryLimit = registry.DEFAULT_LIMIT,
) -> StationsPage:
    page = await registry.list_stations(
        conn, site_id=site, status=station_status, after=cursor, limit=limit
    )
    return StationsPage(items=[station_public(s) for s in page.items], next_cursor=page.next_after)


@router.get(
    "/{station_id}", response_model=StationPublic, summary="One station", responses=NOT_FOUND
)
async def get_station(
    station_id: ChargePointPath, _principal: RegistryReader, conn: DbConn
) -> StationPublic:
    record = found(await registry.get_station(conn, station_id), f"station {station_id!r}")
    return station_public(record)


@router.patch(
    "/{station_id}",
    response_model=StationPublic,
    summary="Change a station's site, security profile, vendor or model",
    description="Only the fields sent change (`site_id: null`: on no site). Profiles 1 "
    "and 2 need a stored password (POST .../password first); profile 3 (client "
    "certificates) is not supported (422). A new profile applies at the station's next "
    "login; its open connection is not closed. 409 for a decommissioned station.",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def update_station(
    station_id: ChargePointPath, body: StationUpdate, _principal: RegistryWriter, conn: DbConn
) -> StationPublic:
    changes = patch_changes(body, not_null=("security_profile",))
    with registry_problems():
        record = await registry.update_station(conn, station_id, changes)
    return station_public(record)


@router.post(
    "/{station_id}/password",
    response_model=StationProvisioned,
    summary="Give a station a new password (in this answer only)",
    description="The old password stops working for new connections at once (a "
    "connection open now stays open); configure the new one on the station (OCPP "
    "SetVariables BasicAuthPassword / 1.6 AuthorizationKey). Admin only. 409 for a "
    "decommissioned station.",
    responses={**NOT_FOUND, **CONFLICT},
)
async def rotate_password(
    station_id: ChargePointPath, _principal: RegistryAdmin, conn: DbConn, response: Response
) -> StationProvisioned:
    password, password_hash = await _new_password()
    with registry_problems():
        record = await registry.set_password(conn, station_id, password_hash)
    return _provisioned(record, password, response)


@router.delete(
    "/{station_id}",
    response_model=StationPublic,
    summary="Decommission a station (soft: its history stays)",
    description="The gateway refuses its logins from now on (404, as for an unknown "
    "identity; a connection open now is not closed). Sessions, CDRs and alerts keep "
    "naming it and its id is not reused. Admin only; decommissioning again answers it "
    "as it is.",
    responses=NOT_FOUND,
)
async def decommission(
    station_id: RetiredPath, _principal: RegistryAdmin, conn: DbConn
) -> StationPublic:
    with registry_problems():
        record = await registry.decommission_station(conn, station_id)
    return station_public(record)


# --------------------------------------------------------------------------- connectors


@router.get(
    "/{station_id}/connectors/{connector_id}",
    response_model=ConnectorPublic,
    summary="A connector's ratings and last status",
    responses=NOT_FOUND,
)
async def get_connector(
    station_id: ChargePointPath,
    connector_id: ConnectorPath,
    _principal: RegistryReader,
    conn: DbConn,
) -> ConnectorPublic:
    record = await registry.get_connector(conn, station_id, connector_id)
    return public_of(ConnectorPublic, found(record, f"connector {connector_id} of {station_id!r}"))


@router.put(
    "/{station_id}/connectors/{connector_id}",
    response_model=ConnectorPublic,
    summary="Set a connector's ratings (type, phases, min/max current, max power)",
    description="Replaces every rating (a field left out is cleared: unknown); the status "
    "the station reports is kept. 422 when min_current_a exceeds max_current_a; 404 for "
    "an unknown station, 409 for a decommissioned one.",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def put_connector(
    station_id: ChargePointPath,
    connector_id: ConnectorPath,
    body: ConnectorUpdate,
    _principal: RegistryWriter,
    conn: DbConn,
) -> ConnectorPublic:
    with registry_problems():
        record = await registry.put_connector(conn, station_id, connector_id, body.model_dump())
    return public_of(ConnectorPublic, record)
