"""The billing desk's reviews of held sessions (tables ``billing_reviews``,
``billing_review_events``; migration 0016), async psycopg.

A session :func:`billing.cdrs.review` holds is stored ``held`` once
(:func:`hold_session`, idempotent); a person decides it once (:func:`decide_review`:
release, correct with the corrected energy and a reason, write off with a reason) and
every step appends an audit row with the row before and after. A decision on a review
that is no longer held raises :class:`ReviewConflictError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from bus.sessions import SessionClosed
from store.db import AsyncDb, Where, connection

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
SYSTEM_ACTOR = "chargeflow"

ReviewAction = Literal["release", "correct", "write_off"]
ReviewStatus = Literal["held", "released", "corrected", "written_off"]
_STATUS_OF: dict[str, ReviewStatus] = {
    "release": "released",
    "correct": "corrected",
    "write_off": "written_off",
}


# --------------------------------------------------------------------------- reviews


class ReviewConflictError(Exception):
    """The review was decided already (a decision applies only to a held session)."""


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    session_id: str
    charge_point_id: str
    connector_id: int
    id_tag: str | None
    started_at: datetime
    stopped_at: datetime | None
    energy_wh: int | None
    quality: str
    reasons: list[str]
    status: str
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    corrected_energy_wh: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewEventRecord:
    event_id: int
    at: datetime
    actor: str
    action: str
    note: str | None
    before: dict[str, Any] | None
    after: dict[str, Any]


_REVIEW_COLUMNS = (
    "session_id, charge_point_id, connector_id, id_tag, started_at, stopped_at, energy_wh,"
    " quality, reasons, status, decided_by, decided_at, note, corrected_energy_wh, created_at"
)
# What the audit rows record of a review before and after each step.
_AUDITED = ("status", "energy_wh", "decided_by", "decided_at", "note", "corrected_energy_wh")
_SNAPSHOT = "jsonb_build_object(" + ", ".join(f"'{c}', {c}" for c in _AUDITED) + ")"


async def hold_session(db: AsyncDb, session: SessionClosed, reasons: Sequence[str]) -> bool:
    """Hold a closed session for review (with its audit row); False when it is held or
    decided already (a replayed ``sessions.closed`` changes nothing)."""
    async with connection(db) as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO billing_reviews (session_id, charge_point_id, connector_id, id_tag,"
            " started_at, stopped_at, energy_wh, quality, reasons)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (session_id) DO NOTHING RETURNING {_SNAPSHOT}",
            (
                session.session_id,
                session.charge_point_id,
                session.connector_id,
                session.id_tag,
                session.started_at,
                session.stopped_at,
                session.energy_wh,
                session.quality.value,
                list(reasons),
            ),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await cur.execute(
            "INSERT INTO billing_review_events (session_id, actor, action, note, after)"
            " VALUES (%s, %s, 'held', %s, %s)",
            (session.session_id, SYSTEM_ACTOR, "; ".join(reasons), Jsonb(row[0])),
        )
        return True


@dataclass(frozen=True, slots=True)
class ReviewPosition:
    started_at: datetime
    session_id: str


@dataclass(frozen=True, slots=True)
class ReviewPage:
    items: list[ReviewRecord] = field(default_factory=list)
    next_after: ReviewPosition | None = None


async def list_reviews(
    db: AsyncDb,
    status: ReviewStatus | None = None,
    *,
    after: ReviewPosition | None = None,
    limit: int = DEFAULT_LIMIT,
) -> ReviewPage:
    """Reviews oldest session first (``started_at, session_id``), of one status if given."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    where = Where()
    where.add_given("status = %s", status)
    if after is not None:
        where.add("(started_at, session_id) > (%s, %s)", after.started_at, after.session_id)
    async with connection(db) as conn, conn.cursor(row_factory=class_row(ReviewRecord)) as cur:
        await cur.execute(
            f"SELECT {_REVIEW_COLUMNS} FROM billing_reviews WHERE {where.sql}"
            " ORDER BY started_at, session_id LIMIT %s",
            [*where.params, limit + 1],
        )
        rows = await cur.fetchall()
    items = rows[:limit]
    next_after = None
    if len(rows) > limit:
        next_after = ReviewPosition(items[-1].started_at, items[-1].session_id)
    return ReviewPage(items, next_after)


async def get_review(db: AsyncDb, session_id: str) -> ReviewRecord | None:
    async with connection(db) as conn, conn.cursor(row_factory=class_row(ReviewRecord)) as cur:
        await cur.execute(
            f"SELECT {_REVIEW_COLUMNS} FROM billing_reviews WHERE session_id = %s",
            (session_id,),
        )
        return await cur.fetchone()


async def review_history(db: AsyncDb, session_id: str) -> list[ReviewEventRecord]:
    """The review's audit rows in the order recorded."""
    async with (
        connection(db) as conn,
        conn.cursor(row_factory=class_row(ReviewEventRecord)) as cur,
    ):
        await cur.execute(
            "SELECT event_id, at, actor, action, note, before, after"
            " FROM billing_review_events WHERE session_id = %s ORDER BY event_id",
            (session_id,),
        )
        return await cur.fetchall()


async def decide_review(
    db: AsyncDb,
    session_id: str,
    action: ReviewAction,
    *,
    actor: str,
    note: str | None = None,
    corrected_energy_wh: int | None = None,
) -> ReviewRecord | None:
    """Release, correct or write off a held session as ``actor`` (one transaction: the
    row locked, decided and its audit row appended); the review afterwards, None if the
    session is not under review. A correction needs ``corrected_energy_wh`` and a note,
    a write-off a note (ValueError); a review not ``held`` raises
    :class:`ReviewConflictError`."""
    if action == "correct" and corrected_energy_wh is None:
        raise ValueError("a correction needs corrected_energy_wh")
    if action != "correct" and corrected_energy_wh is not None:
        raise ValueError("only a correction takes corrected_energy_wh")
    if corrected_energy_wh is not None and corrected_energy_wh < 0:
        raise ValueError("corrected_energy_wh must not be negative")
    if action in ("correct", "write_off") and not (note and note.strip()):
        raise ValueError(f"{action.replace('_', ' ')} needs a reason (note)")
    new_status = _STATUS_OF[action]
    async with connection(db) as conn:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                f"SELECT status, {_SNAPSHOT} FROM billing_reviews WHERE session_id = %s FOR UPDATE",
                (session_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            status, before = row
            if status != "held":
                raise ReviewConflictError(
                    f"session {session_id} is {status.replace('_', ' ')}, not held: "
                    "it was decided already"
                )
            await cur.execute(
                "UPDATE billing_reviews SET status = %s, decided_by = %s, decided_at = now(),"
                " note = %s, corrected_energy_wh = %s WHERE session_id = %s"
                f" RETURNING {_SNAPSHOT}",
                (new_status, actor, note, corrected_energy_wh, session_id),
            )
            after = await cur.fetchone()
            assert after is not None  # the row is locked
            await cur.execute(
                "INSERT INTO billing_review_events (session_id, actor, action, note, before,"
                " after) VALUES (%s, %s, %s, %s, %s, %s)",
                (session_id, actor, new_status, note, Jsonb(before), Jsonb(after[0])),
            )
        return await get_review(conn, session_id)
