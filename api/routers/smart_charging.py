"""Smart charging (docs/smart-charging.md): a site's time-varying limits (write:
operator, admin; read: operator, maintenance, admin), the smart-charging flow's
allocation of a site, a session's charging needs (the driver's app, through an
operator key) and a station's reset once it follows its limits again. Writes are
audited (``api.audit``)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, status

from api.deps import CommandOperator, DbConn, RegistryReader, RegistryWriter
from api.params import EXAMPLE_ACTIVE_SESSION_ID, ChargePointPath, SitePath
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError, found
from api.schemas.smart_charging import (
    AllocationPublic,
    ChargingNeedsPublic,
    ChargingNeedsPut,
    LimitWindowBase,
    SiteLimitsPublic,
    SiteLimitsPut,
    SmartChargingResetPublic,
)
from bus.times import utc_now
from smart_charging.inputs import LimitWindow, SiteLimit, limit_at
from store import sites as site_store
from store import smart_charging as smart_store
from store.registry import fetch

router = APIRouter(tags=["smart charging"], responses=AUTHENTICATED)


async def _limits(conn: DbConn, site: site_store.SiteRecord) -> SiteLimitsPublic:
    windows = await smart_store.limit_windows(conn, site.site_id)
    if site.max_current_a is not None:
        base: SiteLimit | None = SiteLimit((float(site.max_current_a),) * 3)
    elif site.capacity_w is not None:
        base = SiteLimit.from_kw(site.capacity_w / 1000)
    else:
        base = None
    now_a = None
    if base is not None:
        schedule = [
            LimitWindow(w.starts_at, w.ends_at, SiteLimit((float(w.max_current_a),) * 3))
            for w in windows
        ]
        now_a = min(limit_at(base, schedule, utc_now()).per_phase_a)
    return SiteLimitsPublic(
        site_id=site.site_id,
        capacity_w=site.capacity_w,
        max_current_a=None if site.max_current_a is None else float(site.max_current_a),
        base_limit_a=None if base is None else min(base.per_phase_a),
        limit_now_a=now_a,
        windows=[
            LimitWindowBase(
                starts_at=w.starts_at,
                ends_at=w.ends_at,
                max_current_a=float(w.max_current_a),
                reason=w.reason,
            )
            for w in windows
        ],
    )


@router.get(
    "/v1/sites/{site_id}/limits",
    response_model=SiteLimitsPublic,
    summary="A site's limits: static, windows, in force now",
    responses=NOT_FOUND,
)
async def get_limits(
    site_id: SitePath, _principal: RegistryReader, conn: DbConn
) -> SiteLimitsPublic:
    site = found(await site_store.get_site(conn, site_id), f"site {site_id!r}")
    return await _limits(conn, site)


@router.put(
    "/v1/sites/{site_id}/limits",
    response_model=SiteLimitsPublic,
    summary="Replace a site's time-varying limits (peak windows, a grid operator's limit)",
    description="The windows replace the site's schedule; a window only lowers the site's "
    "static limit. The smart-charging flow reads them within "
    "CHARGEFLOW_SMART_RULES_REFRESH_S (2 s) and acts at once.",
    responses={**NOT_FOUND, **UNREADABLE_BODY},
)
async def put_limits(
    site_id: SitePath, body: SiteLimitsPut, principal: RegistryWriter, conn: DbConn
) -> SiteLimitsPublic:
    site = found(await site_store.get_site(conn, site_id), f"site {site_id!r}")
    windows = [
        smart_store.LimitWindowRecord(
            w.starts_at, w.ends_at, Decimal(f"{w.max_current_a:.1f}"), w.reason
        )
        for w in body.windows
    ]
    await smart_store.replace_limit_windows(conn, site_id, windows, principal.name)
    return await _limits(conn, site)


@router.get(
    "/v1/sites/{site_id}/allocation",
    response_model=AllocationPublic,
    summary="The smart-charging flow's latest allocation of a site, per session with reasons",
    description="404 for an unknown site or one the flow has not allocated yet.",
    responses=NOT_FOUND,
)
async def get_allocation(
    site_id: SitePath, _principal: RegistryReader, conn: DbConn
) -> AllocationPublic:
    body = found(await smart_store.site_allocation(conn, site_id), f"allocation of {site_id!r}")
    return AllocationPublic.model_validate(body)


@router.put(
    "/v1/sessions/{session_id}/charging-needs",
    response_model=ChargingNeedsPublic,
    status_code=status.HTTP_200_OK,
    summary="A session's departure time and energy need (the driver's, for smart charging)",
    description="409 once the session has ended.",
    responses={**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY},
)
async def put_charging_needs(
    session_id: Annotated[
        uuid.UUID,
        Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_ACTIVE_SESSION_ID)]),
    ],
    body: ChargingNeedsPut,
    principal: CommandOperator,
    conn: DbConn,
) -> ChargingNeedsPublic:
    rows = await fetch(
        conn,
        "SELECT charge_point_id, transaction_id, status FROM sessions WHERE session_id = %s",
        (session_id,),
    )
    cp, tx, state = found(rows[0] if rows else None, f"session {session_id}")
    if state != "active":
        raise ProblemError(status.HTTP_409_CONFLICT, f"session {session_id} has ended")
    await smart_store.put_charging_needs(
        conn, cp, tx, body.departure_at, body.energy_wh, principal.name
    )
    return ChargingNeedsPublic(
        session_id=session_id,
        station_id=cp,
        transaction_id=tx,
        departure_at=body.departure_at,
        energy_wh=body.energy_wh,
    )


@router.post(
    "/v1/stations/{station_id}/smart-charging/reset",
    response_model=SmartChargingResetPublic,
    summary="Control a station again that was budgeted at full draw (non-compliant, rejecting)",
    description="Once a station that ignored or rejected its limits is fixed (firmware, "
    "configuration): the smart-charging flow clears its marks within "
    "CHARGEFLOW_SMART_RULES_REFRESH_S (2 s), sends it its limits afresh and marks it again "
    "if it still does not follow them. 404 for a station not registered.",
    responses=NOT_FOUND,
)
async def reset_station(
    station_id: ChargePointPath, principal: RegistryWriter, conn: DbConn
) -> SmartChargingResetPublic:
    done = found(
        await smart_store.reset_station(conn, station_id, principal.name), f"station {station_id!r}"
    )
    resets, since = done
    return SmartChargingResetPublic(
        station_id=station_id, resets=resets, cleared_non_compliant_since=since
    )
