"""Read queries over charging sessions (psycopg 3, async).

Listing uses keyset pagination ordered by ``started_at DESC, session_id DESC``
(backed by ``sessions_started_idx`` / ``sessions_station_started_idx``). The
cursor is opaque to callers: urlsafe base64 of ``{"started_at", "session_id"}``
of the last row returned.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

SessionStatus = Literal["active", "closed"]
SESSION_STATUSES: tuple[str, ...] = ("active", "closed")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class InvalidCursorError(ValueError):
    """A pagination cursor that was not produced by :func:`encode_cursor`."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: uuid.UUID
    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    status: str
    started_at: datetime
    stopped_at: datetime | None
    duration_s: float | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: int | None
    energy_source: str | None
    quality: str
    quality_reasons: list[str]
    stop_reason: str | None
    sample_count: int
    closed_by: str | None = None
    station_energy_wh: int | None = None
    smart_meter_energy_wh: int | None = None
    smart_meter_id: str | None = None
    ocpp_version: str | None = None


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Filters for :func:`list_sessions`; ``started_from`` inclusive, ``started_to`` exclusive."""

    charge_point_id: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    status: SessionStatus | None = None

    def __post_init__(self) -> None:
        for name in ("started_from", "started_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if (
            self.started_from is not None
            and self.started_to is not None
            and self.started_from >= self.started_to
        ):
            raise ValueError("'from' must be earlier than 'to'")
        if self.status is not None and self.status not in SESSION_STATUSES:
            raise ValueError(f"status must be one of {', '.join(SESSION_STATUSES)}")


@dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[SessionRecord] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(started_at: datetime, session_id: uuid.UUID) -> str:
    body = json.dumps(
        {"started_at": started_at.isoformat(), "session_id": str(session_id)},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        started_at = datetime.fromisoformat(data["started_at"])
        session_id = uuid.UUID(data["session_id"])
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursorError("invalid pagination cursor") from exc
    if started_at.tzinfo is None:
        raise InvalidCursorError("invalid pagination cursor")
    return started_at, session_id


_COLUMNS = """
    session_id, charge_point_id, connector_id, transaction_id, id_tag, status,
    started_at, stopped_at,
    EXTRACT(EPOCH FROM (stopped_at - started_at))::float8 AS duration_s,
    meter_start_wh, meter_stop_wh, energy_wh, energy_source, quality, quality_reasons,
    stop_reason, sample_count, closed_by, station_energy_wh, smart_meter_energy_wh,
    smart_meter_id, ocpp_version
"""


def _record(row: dict[str, Any]) -> SessionRecord:
    row = dict(row)
    row["quality_reasons"] = list(row["quality_reasons"] or [])
    for key in ("started_at", "stopped_at"):
        if row[key] is not None:
            row[key] = row[key].astimezone(UTC)
    return SessionRecord(**row)


async def list_sessions(
    conn: psycopg.AsyncConnection[Any],
    filters: SessionFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> SessionPage:
    """One page of sessions, newest first; ``next_cursor`` is None on the last page.

    Raises :class:`InvalidCursorError` for a bad cursor, ``ValueError`` for a bad limit.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    filters = filters or SessionFilter()
    where: list[str] = []
    params: list[Any] = []
    if filters.charge_point_id is not None:
        where.append("charge_point_id = %s")
        params.append(filters.charge_point_id)
    if filters.started_from is not None:
        where.append("started_at >= %s")
        params.append(filters.started_from)
    if filters.started_to is not None:
        where.append("started_at < %s")
        params.append(filters.started_to)
    if filters.status is not None:
        where.append("status = %s")
        params.append(filters.status)
    if cursor is not None:
        after_started, after_id = decode_cursor(cursor)
        where.append("(started_at, session_id) < (%s, %s)")
        params.extend([after_started, after_id])
    query = "SELECT " + _COLUMNS + " FROM sessions"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY started_at DESC, session_id DESC LIMIT %s"
    params.append(limit + 1)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    items = [_record(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.started_at, last.session_id)
    return SessionPage(items=items, next_cursor=next_cursor)


async def get_session(
    conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID
) -> SessionRecord | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT " + _COLUMNS + " FROM sessions WHERE session_id = %s", (session_id,)
        )
        row = await cur.fetchone()
    return None if row is None else _record(row)
