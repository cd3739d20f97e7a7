"""Sites (docs/registry.md): a group of stations behind one grid connection, with its
name, IANA time zone and static capacity (watts and/or amperes per phase). Write:
operator, admin; read: operator, maintenance, admin. Time-varying limits are not
here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status

from api.deps import DbConn, RegistryReader, RegistryWriter
from api.params import PATH_ID_PATTERN, RegistryLimit, SitePath, id_cursor, patch_changes
from api.problems import (
    AUTHENTICATED,
    CONFLICT,
    NOT_FOUND,
    UNREADABLE_BODY,
    found,
    registry_problems,
)
from api.schemas import public_of
from api.schemas.sites import SiteCreate, SitePublic, SitesPage, SiteUpdate
from store import registry
from store import sites as site_store

router = APIRouter(prefix="/v1/sites", tags=["registry"], responses=AUTHENTICATED)


def _public(record: site_store.SiteRecord) -> SitePublic:
    return public_of(SitePublic, record)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SitePublic,
    summary="Create a site",
    description="409 when the id exists; 422 for a time zone that is not IANA.",
    responses={**CONFLICT, **UNREADABLE_BODY},
)
async def create_site(body: SiteCreate, _principal: RegistryWriter, conn: DbConn) -> SitePublic:
    with registry_problems():
        record = await site_store.create_site(conn, body.site_id, body.model_dump())
    return _public(record)


@router.get("", response_model=SitesPage, summary="List sites, by id")
async def list_sites(
    _principal: RegistryReader,
    conn: DbConn,
    cursor: Annotated[str | None, id_cursor(PATH_ID_PATTERN)] = None,
    limit: RegistryLimit = registry.DEFAULT_LIMIT,
) -> SitesPage:
    page = await site_store.list_sites(conn, after=cursor, limit=limit)
    return SitesPage(items=[_public(s) for s in page.items], next_cursor=page.next_after)


@router.get("/{site_id}", response_model=SitePublic, summary="One site", responses=NOT_FOUND)
async def get_site(site_id: SitePath, _principal: RegistryReader, conn: DbConn) -> SitePublic:
    record = found(await site_store.get_site(conn, site_id), f"site {site_id!r}")
    return _public(record)


@router.patch(
    "/{site_id}",
    response_model=SitePublic,
    summary="Change a site's name, time zone or capacity",
    description="Only the fields sent change; a capacity sent as null becomes unknown. "
    "The load flow and the allocator read the capacity anew.",
    responses={**NOT_FOUND, **UNREADABLE_BODY},
)
async def update_site(
    site_id: SitePath, body: SiteUpdate, _principal: RegistryWriter, conn: DbConn
) -> SitePublic:
    changes = patch_changes(body, not_null=("name", "time_zone"))
    with registry_problems():
        record = await site_store.update_site(conn, site_id, changes)
    return _public(record)


@router.delete(
    "/{site_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a site (idempotent: 204 whether it existed or not)",
    description="409 while any station names it, decommissioned ones too (their history "
    "keeps the site): move them first (PATCH /v1/stations/{id}).",
    responses=CONFLICT,
)
async def delete_site(site_id: SitePath, _principal: RegistryWriter, conn: DbConn) -> Response:
    with registry_problems():
        await site_store.delete_site(conn, site_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
