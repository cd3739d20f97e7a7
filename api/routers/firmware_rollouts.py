"""Firmware rollouts: update a set of stations (a list, or a site's) in waves, inside a
maintenance window, pausing by itself when a wave's failures exceed the threshold.
The API's rollout worker (``api.firmware_rollouts``) drives them; these operations
create, read and steer them. Roles operator, admin (docs/firmware.md)."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import CommandOperator, DbConn
from api.params import cursor_after, next_cursor, position_cursor
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.firmware import (
    EXAMPLE_ROLLOUT_ID,
    FirmwareRolloutCreate,
    FirmwareRolloutDetail,
    FirmwareRolloutPublic,
    FirmwareRolloutsPage,
    RolloutStationPublic,
    UpdateFirmwareCreate,
    WavePublic,
    WindowSpec,
)
from bus.times import utc_now
from models import firmware_rollout as logic
from store import firmware_rollouts as store
from store.db import AsyncDb

router = APIRouter(prefix="/v1/firmware-rollouts", tags=["firmware"], responses=AUTHENTICATED)

RolloutIdPath = Annotated[
    uuid.UUID, Path(description="The rollout's id", examples=[EXAMPLE_ROLLOUT_ID])
]
MAX_LIMIT = 200


def _public(rollout: store.Rollout, stations: list[store.RolloutStation]) -> dict[str, object]:
    return dict(
        rollout_id=rollout.rollout_id,
        name=rollout.name,
        status=rollout.status,
        firmware=UpdateFirmwareCreate.model_validate(rollout.firmware),
        wave_size=rollout.wave_size,
        wave_unit=rollout.wave_unit,
        failure_threshold=float(rollout.failure_threshold),
        threshold_unit=rollout.threshold_unit,
        window=None if rollout.window is None else WindowSpec.model_validate(rollout.window),
        station_timeout_s=rollout.station_timeout_s,
        current_wave=rollout.current_wave + 1,
        wave_count=1 + max((s.wave for s in stations), default=0),
        pause_reason=rollout.pause_reason,
        counts=dict(Counter(s.state for s in stations)),
        created_by=rollout.created_by,
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
    )


def _station(s: store.RolloutStation) -> RolloutStationPublic:
    return RolloutStationPublic(
        station_id=s.charge_point_id,
        state=s.state,
        command_id=s.command_id,
        sent_at=s.sent_at,
        last_status=s.last_status,
        updated_at=s.updated_at,
    )


async def _detail(db: AsyncDb, rollout_id: uuid.UUID) -> FirmwareRolloutDetail:
    rollout = await store.get(db, rollout_id)
    if rollout is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"no firmware rollout {rollout_id}")
    stations = await store.stations(db, rollout_id)
    waves = [
        WavePublic(
            wave=n + 1,
            counts=dict(Counter(s.state for s in stations if s.wave == n)),
            stations=[_station(s) for s in stations if s.wave == n],
        )
        for n in sorted({s.wave for s in stations})
    ]
    return FirmwareRolloutDetail(**_public(rollout, stations), waves=waves)


async def _targets(db: AsyncDb, body: FirmwareRolloutCreate) -> list[str]:
    if body.stations is not None:
        unknown = sorted(set(body.stations) - await store.known_stations(db, body.stations))
        if unknown:
            raise ProblemError(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"unknown stations: {', '.join(unknown[:20])}",
            )
        return body.stations
    assert body.site_id is not None
    found = await store.site_stations(db, body.site_id)
    if not found:
        raise ProblemError(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"site {body.site_id!r} has no stations"
        )
    return found


@router.post(
    "",
    response_model=FirmwareRolloutDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Create a firmware rollout (pending; the rollout worker starts it)",
    responses={**UNREADABLE_BODY},
)
async def create_rollout(
    body: FirmwareRolloutCreate, response: Response, principal: CommandOperator, conn: DbConn
) -> FirmwareRolloutDetail:
    targets = await _targets(conn, body)
    now = utc_now()
    rollout = store.Rollout(
        rollout_id=uuid.uuid4(),
        name=body.name,
        status="pending",
        firmware=body.firmware.model_dump(mode="json", exclude_none=True),
        wave_size=body.wave_size,
        wave_unit=body.wave_unit,
        failure_threshold=Decimal(str(body.failure_threshold)),
        threshold_unit=body.threshold_unit,
        window=None if body.window is None else body.window.model_dump(mode="json"),
        station_timeout_s=body.station_timeout_s,
        current_wave=0,
        pause_reason=None,
        created_by=principal.name,
        created_at=now,
        updated_at=now,
    )
    await store.create(conn, rollout, logic.plan_waves(targets, body.wave_size, body.wave_unit))
    response.headers["Location"] = f"/v1/firmware-rollouts/{rollout.rollout_id}"
    return await _detail(conn, rollout.rollout_id)


@router.get("", response_model=FirmwareRolloutsPage, summary="Firmware rollouts, newest first")
async def list_rollouts(
    principal: CommandOperator,
    conn: DbConn,
    cursor: Annotated[
        str | None,
        position_cursor(
            "<created_at in microseconds since 1970 UTC>-<rollout_id as 32 hex digits>"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")] = 50,
) -> FirmwareRolloutsPage:
    items, next_after = await store.page(conn, cursor_after(cursor), limit)
    public = [
        FirmwareRolloutPublic(**_public(r, await store.stations(conn, r.rollout_id))) for r in items
    ]
    return FirmwareRolloutsPage(items=public, next_cursor=next_cursor(next_after))


@router.get(
    "/{rollout_id}",
    response_model=FirmwareRolloutDetail,
    summary="A rollout with its progress per wave and station",
    responses={**NOT_FOUND},
)
async def get_rollout(
    rollout_id: RolloutIdPath, principal: CommandOperator, conn: DbConn
) -> FirmwareRolloutDetail:
    return await _detail(conn, rollout_id)


async def _steer(
    conn: AsyncDb, rollout_id: uuid.UUID, event: str, reason: str | None
) -> FirmwareRolloutDetail:
    rollout = await store.get(conn, rollout_id)
    if rollout is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"no firmware rollout {rollout_id}")
    try:
        target = logic.transition(rollout.status, event)
    except logic.InvalidTransition as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    changed = await store.set_status(
        conn, rollout_id, rollout.status, target, reason, waive=event == "resume"
    )
    if not changed:
        raise ProblemError(status.HTTP_409_CONFLICT, "the rollout changed meanwhile; read it again")
    return await _detail(conn, rollout_id)


STEER = {
    "pause": "Pause (no further commands; those sent run on)",
    "resume": "Resume a paused rollout (its current wave continues past its failures)",
    "cancel": "Cancel (no further commands; those sent run on)",
}


def _steering(event: str, summary: str) -> None:
    async def endpoint(
        rollout_id: RolloutIdPath, principal: CommandOperator, conn: DbConn
    ) -> FirmwareRolloutDetail:
        reason = f"paused by {principal.name}" if event == "pause" else None
        return await _steer(conn, rollout_id, event, reason)

    endpoint.__name__ = f"{event}_rollout"
    router.post(
        f"/{{rollout_id}}/{event}",
        response_model=FirmwareRolloutDetail,
        summary=summary,
        responses={**NOT_FOUND, **CONFLICT},
    )(endpoint)


for _event, _summary in STEER.items():
    _steering(_event, _summary)
