"""Issued CDRs and customers' statements (table ``cdrs``; migration 0016), async
psycopg; the reviews of held sessions are :mod:`store.billing_reviews`.

CDRs are immutable (a trigger refuses UPDATE and DELETE): :func:`insert_cdr` stores one
once, keyed by its id (a replay stores nothing and changes nothing). ``body`` is the CDR
as :func:`billing.preview.encode_cdr` wrote it; it is read back as JSON text
(``body::text``), never decoded into floats. Listings and exports are ordered by
``(start_date_time, cdr_id)`` (keyset pagination on ``cdrs_start_idx``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from billing.cdrs import cdr_revision
from billing.money import from_minor, to_minor
from billing.payments.postpaid import month_bounds
from billing.preview import encode_cdr
from store.db import AsyncDb, Where, connection, execute

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Rows a server-side cursor fetches per round trip while exporting.
EXPORT_FETCH = 2000


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
