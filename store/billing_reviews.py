"""The billing desk's reviews of held sessions (tables ``billing_reviews``,
``billing_review_events``; migration 0016), async psycopg.

A session :func:`billing.cdrs.review` holds is stored ``held`` once
(:func:`hold_session`, idempotent); a person decides it once (:func:`decide_review`:
release, correct with the corrected energy and a reason, write off with a reason) and
every step appends an audit row with the row before and after. A decision on a review
that is no longer held raises :class:`ReviewConflictError`.

The billing worker carries decisions out (:mod:`invoicing.reviews`): it reads the
decided, unsettled ones with their sessions as stored (:func:`unsettled_decisions`) and
marks each settled once done (:func:`settle_review`, migration 0020; audited as
``settled``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from bus.sessions import SessionClosed, session_closed_from_row
from store.db import AsyncDb, Where, connection
from store.sessions_outbox import session_closed_json

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
    settled_at: datetime | None = None  # when billing carried the decision out
    cdr_id: str | None = None  # the CDR the decision issued (released, corrected)


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
    " quality, reasons, status, decided_by, decided_at, note, corrected_energy_wh, created_at,"
    " settled_at, cdr_id"
)
# What the audit rows record of a review before and after each step.
_AUDITED = (
    "status",
    "energy_wh",
    "decided_by",
    "decided_at",
    "note",
    "corrected_energy_wh",
    "settled_at",
    "cdr_id",
)
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
            if action == "release" and before["energy_wh"] is None:
                raise ReviewConflictError(
                    f"session {session_id} has no energy figure to bill as it stands: "
                    "correct it or write it off"
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


# --------------------------------------------------------------------------- settlement


@dataclass(frozen=True, slots=True)
class Decision:
    """A decided review billing has not carried out yet, with the session as stored
    (``sessions``, closed at the decision; None when the session is not stored)."""

    session_id: str
    status: ReviewStatus
    decided_by: str
    decided_at: datetime
    note: str | None
    corrected_energy_wh: int | None
    session: SessionClosed | None


_UUID = "'^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$'"
# The review's session as its sessions.closed message, closed at the decision (whole
# seconds: OCPI's DateTime); the subquery's own columns are the session's; a review id
# that is no uuid matches no session instead of failing.
_CLOSED_AT_DECISION = "date_trunc('second', r.decided_at)"
_STORED_SESSION = (
    f"(SELECT {session_closed_json(_CLOSED_AT_DECISION)} FROM sessions"
    f" WHERE session_id = CASE WHEN r.session_id ~ {_UUID} THEN r.session_id::uuid END)"
)


async def unsettled_decisions(
    db: AsyncDb, *, skip: Sequence[str] = (), limit: int = DEFAULT_LIMIT
) -> list[Decision]:
    """Decided reviews not settled yet, oldest decision first, but those in ``skip``
    (on ``billing_reviews_unsettled_idx``)."""
    async with connection(db) as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT r.session_id, r.status, r.decided_by, r.decided_at, r.note,"
            f" r.corrected_energy_wh, {_STORED_SESSION} FROM billing_reviews r"
            " WHERE r.status <> 'held' AND r.settled_at IS NULL"
            " AND NOT (r.session_id = ANY(%s)) ORDER BY r.decided_at, r.session_id LIMIT %s",
            (list(skip), limit),
        )
        rows = await cur.fetchall()
    return [
        Decision(
            session_id=session_id,
            status=status,
            decided_by=decided_by,
            decided_at=decided_at,
            note=note,
            corrected_energy_wh=corrected,
            session=None if stored is None else session_closed_from_row(stored),
        )
        for session_id, status, decided_by, decided_at, note, corrected, stored in rows
    ]


async def settle_review(db: AsyncDb, session_id: str, *, cdr_id: str | None, note: str) -> bool:
    """Mark a decided review carried out (with the CDR it issued) and audit it as the
    system; False (nothing changed) when it was settled already."""
    async with connection(db) as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            f"SELECT {_SNAPSHOT} FROM billing_reviews WHERE session_id = %s"
            " AND status <> 'held' AND settled_at IS NULL FOR UPDATE",
            (session_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await cur.execute(
            "UPDATE billing_reviews SET settled_at = now(), cdr_id = %s WHERE session_id = %s"
            f" RETURNING {_SNAPSHOT}",
            (cdr_id, session_id),
        )
        after = await cur.fetchone()
        assert after is not None  # the row is locked
        await cur.execute(
            "INSERT INTO billing_review_events (session_id, actor, action, note, before,"
            " after) VALUES (%s, %s, 'settled', %s, %s, %s)",
            (session_id, SYSTEM_ACTOR, note, Jsonb(row[0]), Jsonb(after[0])),
        )
        return True
