"""Firmware rollouts (tables ``firmware_rollouts`` and ``firmware_rollout_stations``,
migration 0027): create one with its stations in waves, read it, change its status
conditionally, and the worker's steps (lock the active rollouts, record a sent command,
a station's new state, the next wave). The decisions are in
:mod:`models.firmware_rollout`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from store.db import AsyncDb, connection, execute

_ROLLOUT = (
    "rollout_id, name, status, firmware, wave_size, wave_unit, failure_threshold, "
    "threshold_unit, window_spec, station_timeout_s, current_wave, pause_reason, created_by, "
    "created_at, updated_at, waived_wave"
)
_STATION = (
    "s.charge_point_id, s.wave, s.state, s.command_id, s.request_id, s.sent_at, "
    "s.last_status, s.updated_at, c.status, COALESCE(z.time_zone, 'UTC')"
)
_STATION_FROM = (
    "firmware_rollout_stations s LEFT JOIN commands c ON c.command_id = s.command_id "
    "LEFT JOIN stations st ON st.charge_point_id = s.charge_point_id "
    "LEFT JOIN sites z ON z.site_id = st.site_id"
)


@dataclass(frozen=True, slots=True)
class Rollout:
    rollout_id: uuid.UUID
    name: str
    status: str
    firmware: dict[str, Any]  # the UpdateFirmwareCreate body, JSON form
    wave_size: int
    wave_unit: str
    failure_threshold: Decimal
    threshold_unit: str
    window: dict[str, Any] | None
    station_timeout_s: int
    current_wave: int
    pause_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    waived_wave: int | None = None  # a resume let this wave continue past its failures


@dataclass(frozen=True, slots=True)
class RolloutStation:
    charge_point_id: str
    wave: int
    state: str
    command_id: uuid.UUID | None
    request_id: int | None
    sent_at: datetime | None
    last_status: str | None
    updated_at: datetime
    command_status: str | None
    site_zone: str


def _rollout(row: tuple[Any, ...]) -> Rollout:
    return Rollout(*row)


async def create(db: AsyncDb, rollout: Rollout, waves: list[list[str]]) -> None:
    """The rollout and its stations (wave 0 first), in one transaction."""
    async with connection(db) as conn, conn.transaction():
        await conn.execute(
            f"INSERT INTO firmware_rollouts ({_ROLLOUT}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                rollout.rollout_id, rollout.name, rollout.status, Jsonb(rollout.firmware),
                rollout.wave_size, rollout.wave_unit, rollout.failure_threshold,
                rollout.threshold_unit, None if rollout.window is None else Jsonb(rollout.window),
                rollout.station_timeout_s, rollout.current_wave, rollout.pause_reason,
                rollout.created_by, rollout.created_at, rollout.updated_at, rollout.waived_wave,
            ),
        )  # fmt: skip
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO firmware_rollout_stations (rollout_id, charge_point_id, wave) "
                "VALUES (%s, %s, %s)",
                [(rollout.rollout_id, cp, n) for n, wave in enumerate(waves) for cp in wave],
            )


async def known_stations(db: AsyncDb, charge_point_ids: list[str]) -> set[str]:
    rows = await execute(
        db,
        "SELECT charge_point_id FROM stations WHERE charge_point_id = ANY(%s)",
        (charge_point_ids,),
    )
    return {str(r[0]) for r in rows}


async def site_stations(db: AsyncDb, site_id: str) -> list[str]:
    rows = await execute(
        db,
        "SELECT charge_point_id FROM stations WHERE site_id = %s ORDER BY charge_point_id",
        (site_id,),
    )
    return [str(r[0]) for r in rows]


async def get(db: AsyncDb, rollout_id: uuid.UUID) -> Rollout | None:
    rows = await execute(
        db, f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE rollout_id = %s", (rollout_id,)
    )
    return _rollout(rows[0]) if rows else None


async def stations(db: AsyncDb, rollout_id: uuid.UUID) -> list[RolloutStation]:
    rows = await execute(
        db,
        f"SELECT {_STATION} FROM {_STATION_FROM} WHERE s.rollout_id = %s "
        "ORDER BY s.wave, s.charge_point_id",
        (rollout_id,),
    )
    return [RolloutStation(*r) for r in rows]


async def page(
    db: AsyncDb, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[list[Rollout], tuple[datetime, uuid.UUID] | None]:
    """Newest first; ``after`` the previous page's last (created_at, rollout_id)."""
    where, params = ("(created_at, rollout_id) < (%s, %s)", after) if after else ("TRUE", ())
    rows = await execute(
        db,
        f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE {where} "
        "ORDER BY created_at DESC, rollout_id DESC LIMIT %s",
        (*params, limit + 1),
    )
    items = [_rollout(r) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return items, None if last is None else (last.created_at, last.rollout_id)


async def set_status(
    db: AsyncDb,
    rollout_id: uuid.UUID,
    expected: str,
    status: str,
    reason: str | None = None,
    *,
    waive: bool = False,
) -> bool:
    """``expected`` -> ``status`` (False: the rollout was no longer ``expected``);
    ``waive``: the current wave may continue past its failures (a resume)."""
    rows = await execute(
        db,
        "UPDATE firmware_rollouts SET status = %s, pause_reason = %s, updated_at = now(), "
        "waived_wave = CASE WHEN %s THEN current_wave ELSE waived_wave END "
        "WHERE rollout_id = %s AND status = %s RETURNING rollout_id",
        (status, reason, waive, rollout_id, expected),
    )
    return bool(rows)


@asynccontextmanager
async def locked_active(
    db: AsyncDb,
) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], list[Rollout]]]:
    """The pending and running rollouts no other replica is driving, locked for the
    block (``FOR UPDATE SKIP LOCKED``: one driver per rollout), with the connection
    holding the lock: update those rows through it (another connection would wait)."""
    async with connection(db) as conn, conn.transaction():
        cur = await conn.execute(
            f"SELECT {_ROLLOUT} FROM firmware_rollouts WHERE status IN ('pending', 'running') "
            "ORDER BY created_at FOR UPDATE SKIP LOCKED"
        )
        yield conn, [_rollout(r) for r in await cur.fetchall()]


async def mark_sent(
    db: AsyncDb,
    rollout_id: uuid.UUID,
    charge_point_id: str,
    command_id: uuid.UUID,
    request_id: int | None,
    sent_at: datetime,
) -> None:
    await execute(
        db,
        "UPDATE firmware_rollout_stations SET state = 'sent', command_id = %s, "
        "request_id = %s, sent_at = %s, updated_at = now() "
        "WHERE rollout_id = %s AND charge_point_id = %s AND state = 'queued'",
        (command_id, request_id, sent_at, rollout_id, charge_point_id),
    )


async def set_station_state(
    db: AsyncDb, rollout_id: uuid.UUID, charge_point_id: str, state: str, last_status: str | None
) -> None:
    await execute(
        db,
        "UPDATE firmware_rollout_stations SET state = %s, last_status = %s, updated_at = now() "
        "WHERE rollout_id = %s AND charge_point_id = %s",
        (state, last_status, rollout_id, charge_point_id),
    )


async def advance(db: AsyncDb, rollout_id: uuid.UUID, wave: int, status: str) -> None:
    await execute(
        db,
        "UPDATE firmware_rollouts SET current_wave = %s, status = %s, updated_at = now() "
        "WHERE rollout_id = %s",
        (wave, status, rollout_id),
    )
