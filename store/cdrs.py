"""Issued CDRs and the billing desk's reviews (tables ``cdrs``, ``billing_reviews``,
``billing_review_events``; migration 0016), async psycopg.

CDRs are immutable (a trigger refuses UPDATE and DELETE): :func:`insert_cdr` stores one
once, keyed by its id (a replay stores nothing and changes nothing). ``body`` is the CDR
as :func:`billing.preview.encode_cdr` wrote it; it is read back as JSON text
(``body::text``), never decoded into floats. Listings and exports are ordered by
``(start_date_time, cdr_id)`` (keyset pagination on ``cdrs_start_idx``).

Reviews: a session :func:`billing.cdrs.review` holds is stored ``held`` once
(:func:`hold_session`, idempotent); a person decides it once (:func:`decide_review`:
release, correct with the corrected energy and a reason, write off with a reason) and
every step appends an audit row with the row before and after. A decision on a review
that is no longer held raises :class:`ReviewConflictError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from billing.cdrs import cdr_revision
from billing.money import from_minor, to_minor
from billing.payments.postpaid import month_bounds
from billing.preview import encode_cdr
from bus.sessions import SessionClosed
from store.db import AsyncDb, Where, connection, execute

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Rows a server-side cursor fetches per round trip while exporting.
EXPORT_FETCH = 2000
SYSTEM_ACTOR = "chargeflow"

ReviewAction = Literal["release", "correct", "write_off"]
ReviewStatus = Literal["held", "released", "corrected", "written_off"]
_STATUS_OF: dict[str, ReviewStatus] = {
    "release": "released",
    "correct": "corrected",
    "write_off": "written_off",
}


# --------------------------------------------------------------------------- CDRs


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """A stored CDR's columns (its body: :func:`get_cdr`)."""

    cdr_id: str
    session_id: str
    revision: int
    credit: bool
    credit_reference_id: str | None
    charge_point_id: str
    connector_id: int
    site_id: str | None
    id_tag: str | None
    customer: str | None
    currency: str
    total_excl_minor: int
    total_incl_minor: int
    energy_wh: int
    start_date_time: datetime
    end_date_time: datetime
    issued_at: datetime

    @property
    def total_excl_vat(self) -> Decimal:
        return from_minor(self.total_excl_minor, self.currency)

    @property
    def total_incl_vat(self) -> Decimal:
        return from_minor(self.total_incl_minor, self.currency)

    @property
    def energy_kwh(self) -> Decimal:
        return Decimal(self.energy_wh).scaleb(-3)


_CDR_COLUMNS = (
    "cdr_id, session_id, revision, credit, credit_reference_id, charge_point_id,"
    " connector_id, site_id, id_tag, customer, currency, total_excl_minor, total_incl_minor,"
    " energy_wh, start_date_time, end_date_time, issued_at"
)


def _exact_minor(amount: Any, currency: str, what: str) -> int:
    """``amount`` in minor units; a CDR's totals are already rounded to the minor unit,
    so anything finer is an error, not something to round away silently."""
    value = Decimal(amount)
    minor = to_minor(value, currency)
    if from_minor(minor, currency) != value:
        raise ValueError(f"{what} {value} is not a whole number of {currency} minor units")
    return minor


def _cdr_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"CDR time without an offset: {value!r}")
    return parsed


def cdr_row(
    cdr: dict[str, Any],
    *,
    charge_point_id: str,
    connector_id: int,
    site_id: str | None,
    id_tag: str | None,
    customer: str | None,
) -> tuple[Any, ...]:
    """The ``cdrs`` row of a CDR (body as its exact JSON text), columns in the order of
    :data:`INSERT_COLUMNS`."""
    revision, credit = cdr_revision(cdr["id"])
    if credit != bool(cdr.get("credit")):
        raise ValueError(f"CDR {cdr['id']}: credit flag and id disagree")
    currency = cdr["currency"]
    energy_wh = (Decimal(cdr["total_energy"]) * 1000).to_integral_value(ROUND_HALF_UP)
    return (
        cdr["id"],
        cdr["session_id"],
        revision,
        credit,
        cdr.get("credit_reference_id"),
        charge_point_id,
        connector_id,
        site_id,
        id_tag,
        customer,
        currency,
        _exact_minor(cdr["total_cost"]["excl_vat"], currency, "total_cost.excl_vat"),
        _exact_minor(cdr["total_cost"]["incl_vat"], currency, "total_cost.incl_vat"),
        int(energy_wh),
        _cdr_time(cdr["start_date_time"]),
        _cdr_time(cdr["end_date_time"]),
        encode_cdr(cdr).decode(),
    )


INSERT_COLUMNS = (
    "cdr_id, session_id, revision, credit, credit_reference_id, charge_point_id,"
    " connector_id, site_id, id_tag, customer, currency, total_excl_minor, total_incl_minor,"
    " energy_wh, start_date_time, end_date_time, body"
)


async def insert_cdr(
    db: AsyncDb,
    cdr: dict[str, Any],
    *,
    charge_point_id: str,
    connector_id: int,
    site_id: str | None,
    id_tag: str | None,
    customer: str | None,
) -> bool:
    """Store an issued CDR; False (and nothing changed) when its id is stored already."""
    row = cdr_row(
        cdr,
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        site_id=site_id,
        id_tag=id_tag,
        customer=customer,
    )
    marks = ", ".join(["%s"] * (len(row) - 1))
    rows = await execute(
        db,
        f"INSERT INTO cdrs ({INSERT_COLUMNS}) VALUES ({marks}, %s::jsonb)"
        " ON CONFLICT (cdr_id) DO NOTHING RETURNING cdr_id",
        row,
    )
    return bool(rows)


async def session_cdr(db: AsyncDb, session_id: str) -> str | None:
    """The JSON text of the session's CDR in force: its latest revision that no credit
    CDR cancels (None: not billed, or credited without a new revision)."""
    rows = await execute(
        db,
        "SELECT c.body::text FROM cdrs c WHERE c.session_id = %s AND NOT c.credit"
        " AND NOT EXISTS (SELECT 1 FROM cdrs k WHERE k.credit_reference_id = c.cdr_id)"
        " ORDER BY c.revision DESC LIMIT 1",
        (session_id,),
    )
    return str(rows[0][0]) if rows else None


async def get_cdr(db: AsyncDb, cdr_id: str) -> str | None:
    """The CDR's stored JSON text (numbers exactly as issued), None if there is none."""
    rows = await execute(db, "SELECT body::text FROM cdrs WHERE cdr_id = %s", (cdr_id,))
    return str(rows[0][0]) if rows else None


@dataclass(frozen=True, slots=True)
class CdrFilter:
    """Filters of listings and exports: ``since`` inclusive, ``until`` exclusive, both on
    ``start_date_time``."""

    since: datetime | None = None
    until: datetime | None = None
    site_id: str | None = None
    charge_point_id: str | None = None
    id_tag: str | None = None
    customer: str | None = None
    credit: bool | None = None


@dataclass(frozen=True, slots=True)
class CdrPosition:
    """Where a page ended: the last row's sort key."""

    start_date_time: datetime
    cdr_id: str


@dataclass(frozen=True, slots=True)
class CdrPage:
    items: list[CdrRecord] = field(default_factory=list)
    next_after: CdrPosition | None = None  # None on the last page


def _where(filters: CdrFilter, after: CdrPosition | None = None) -> Where:
    where = Where()
    where.add_given("start_date_time >= %s", filters.since)
    where.add_given("start_date_time < %s", filters.until)
    where.add_given("site_id = %s", filters.site_id)
    where.add_given("charge_point_id = %s", filters.charge_point_id)
    where.add_given("id_tag = %s", filters.id_tag)
    where.add_given("customer = %s", filters.customer)
    where.add_given("credit = %s", filters.credit)
    if after is not None:
        where.add("(start_date_time, cdr_id) > (%s, %s)", after.start_date_time, after.cdr_id)
    return where


async def list_cdrs(
    db: AsyncDb,
    filters: CdrFilter | None = None,
    *,
    after: CdrPosition | None = None,
    limit: int = DEFAULT_LIMIT,
) -> CdrPage:
    """One page of CDRs, oldest ``start_date_time`` first, after ``after`` if given."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    where = _where(filters or CdrFilter(), after)
    query = (
        f"SELECT {_CDR_COLUMNS} FROM cdrs WHERE {where.sql}"
        " ORDER BY start_date_time, cdr_id LIMIT %s"
    )
    async with connection(db) as conn, conn.cursor(row_factory=class_row(CdrRecord)) as cur:
        await cur.execute(query, [*where.params, limit + 1])
        rows = await cur.fetchall()
    items = rows[:limit]
    next_after = None
    if len(rows) > limit:
        next_after = CdrPosition(items[-1].start_date_time, items[-1].cdr_id)
    return CdrPage(items=items, next_after=next_after)


async def stream_cdrs(
    conn: psycopg.AsyncConnection[Any], filters: CdrFilter | None = None
) -> AsyncIterator[CdrRecord]:
    """Every CDR the filters select, in listing order, through a server-side cursor
    (memory stays constant however many there are; one transaction on ``conn``)."""
    where = _where(filters or CdrFilter())
    query = f"SELECT {_CDR_COLUMNS} FROM cdrs WHERE {where.sql} ORDER BY start_date_time, cdr_id"
    async with (
        conn.transaction(),
        conn.cursor("cdr_export", row_factory=class_row(CdrRecord)) as cur,
    ):
        cur.itersize = EXPORT_FETCH
        await cur.execute(query, where.params)
        async for record in cur:
            yield record


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    total_excl_minor: int
    total_incl_minor: int

    @property
    def total_excl_vat(self) -> Decimal:
        return from_minor(self.total_excl_minor, self.currency)

    @property
    def total_incl_vat(self) -> Decimal:
        return from_minor(self.total_incl_minor, self.currency)


@dataclass(frozen=True, slots=True)
class CdrStatement:
    customer: str
    month: str
    time_zone: str
    lines: list[CdrRecord]
    totals: list[CurrencyTotal]  # by currency code


async def statement(db: AsyncDb, customer: str, month: str, time_zone: str) -> CdrStatement:
    """The customer's CDRs that started in ``month`` (``YYYY-MM``) local to
    ``time_zone``, credit CDRs included (their totals are negative), with the totals per
    currency in minor units. ValueError for a month or time zone that is not one."""
    start, end = month_bounds(month, time_zone)
    where = _where(CdrFilter(since=start, until=end, customer=customer))
    async with connection(db) as conn, conn.cursor(row_factory=class_row(CdrRecord)) as cur:
        await cur.execute(
            f"SELECT {_CDR_COLUMNS} FROM cdrs WHERE {where.sql} ORDER BY start_date_time, cdr_id",
            where.params,
        )
        lines = await cur.fetchall()
    sums: dict[str, tuple[int, int]] = {}
    for line in lines:
        excl, incl = sums.get(line.currency, (0, 0))
        sums[line.currency] = (excl + line.total_excl_minor, incl + line.total_incl_minor)
    totals = [CurrencyTotal(c, excl, incl) for c, (excl, incl) in sorted(sums.items())]
    return CdrStatement(customer, month, time_zone, lines, totals)


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
