"""The audit log of the API's writes (table ``api_audit``, migration 0025): one row
per POST/PUT/PATCH/DELETE whatever its outcome, written by the ``api.audit``
middleware; read by ``GET /v1/audit``. No request body is stored, only
:class:`AuditEntry.summary` (its size, media type and top-level field names)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from store.db import AsyncDb, Where, execute

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class Outcome(StrEnum):
    SUCCESS = "success"  # 1xx-3xx
    CLIENT_ERROR = "client_error"  # 4xx
    SERVER_ERROR = "server_error"  # 5xx


_OUTCOME_SQL = {
    Outcome.SUCCESS: "status < 400",
    Outcome.CLIENT_ERROR: "status >= 400 AND status < 500",
    Outcome.SERVER_ERROR: "status >= 500",
}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: uuid.UUID
    at: datetime
    api_key_id: str | None
    role: str | None
    method: str
    route: str
    path_params: dict[str, str]
    summary: dict[str, Any]
    status: int
    client: str | None
    duration_ms: float


_COLUMNS = (
    "audit_id, at, api_key_id, role, method, route, path_params, summary, status, client, "
    "duration_ms"
)


async def insert_audit(db: AsyncDb, entry: AuditEntry) -> None:
    await execute(
        db,
        f"INSERT INTO api_audit ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            entry.audit_id,
            entry.at,
            entry.api_key_id,
            entry.role,
            entry.method,
            entry.route,
            Jsonb(entry.path_params),
            Jsonb(entry.summary),
            entry.status,
            entry.client,
            entry.duration_ms,
        ),
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    api_key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    method: str | None = None
    route_prefix: str | None = None
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    next_after: tuple[datetime, uuid.UUID] | None


def _like_prefix(prefix: str) -> str:
    r"""A LIKE pattern matching what starts with ``prefix`` literally.

    >>> _like_prefix("/v1/a_b%")
    '/v1/a\\_b\\%%'
    """
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_audit(
    db: AsyncDb,
    filters: AuditFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AuditPage:
    """Newest first (ties by id), ``after`` the previous page's last row."""
    where = Where()
    where.add_given("api_key_id = %s", filters.api_key_id)
    where.add_given("at >= %s", filters.since)
    where.add_given("at < %s", filters.until)
    where.add_given("method = %s", filters.method)
    if filters.route_prefix is not None:
        where.add("route LIKE %s", _like_prefix(filters.route_prefix))
    if filters.outcome is not None:
        where.add(_OUTCOME_SQL[filters.outcome])
    if after is not None:
        where.add("(at, audit_id) < (%s, %s)", *after)
    rows = await execute(
        db,
        f"SELECT {_COLUMNS} FROM api_audit WHERE {where.sql} "
        "ORDER BY at DESC, audit_id DESC LIMIT %s",
        (*where.params, limit + 1),
    )
    items = [AuditEntry(*r) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return AuditPage(items, None if last is None else (last.at, last.audit_id))
