"""Issued CDRs (list, one as issued, CSV export), the billing desk's held sessions
(list; release, correct, write off: audited with the API key's name) and customers'
monthly statements (JSON and printable HTML). Roles billing, admin."""

from __future__ import annotations

import csv
import functools
import io
import zoneinfo
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status
from fastapi.responses import HTMLResponse, StreamingResponse

from api.deps import BillingDesk, DbConn, DbPool
from api.params import (
    EXAMPLE_CUSTOMER,
    EXAMPLE_HELD_SESSIONS,
    MONTH_PATTERN,
    TIMESTAMP_DESCRIPTION,
    CdrCursor,
    CdrCursorPosition,
    ReviewCursor,
    ReviewCursorPosition,
    SiteFilter,
    StationId,
    Timestamp,
    decode_cdr_cursor,
    decode_review_cursor,
    encode_cdr_cursor,
    encode_review_cursor,
    range_error,
    require_ordered,
    text_id,
)
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.cdrs import (
    EXAMPLE_CDR_ID,
    CdrPublic,
    CdrsPage,
    CorrectionCreate,
    ReleaseCreate,
    ReviewPublic,
    ReviewsPage,
    StatementPublic,
    WriteOffCreate,
)
from api.statement_html import render_statement
from billing.cdrs import CDR_ID_PATTERN, MAX_CDR_ID
from billing.priced import ocpi_datetime
from store import billing_reviews as review_store
from store import cdrs as cdr_store

router = APIRouter(tags=["billing"], responses=AUTHENTICATED)

IdTagFilter = Annotated[str | None, text_id(Query, "The driver's id tag", "TAG-1")]
CustomerFilter = Annotated[str | None, text_id(Query, "Customer", EXAMPLE_CUSTOMER)]
CustomerPath = Annotated[str, text_id(Path, "Customer", EXAMPLE_CUSTOMER)]


def _held_session(action: review_store.ReviewAction) -> Any:
    return text_id(Path, "The held session's id", EXAMPLE_HELD_SESSIONS[action])


ReleasePath = Annotated[str, _held_session("release")]
CorrectPath = Annotated[str, _held_session("correct")]
WriteOffPath = Annotated[str, _held_session("write_off")]
CdrIdPath = Annotated[
    str,
    Path(
        min_length=32,
        max_length=MAX_CDR_ID,
        pattern=CDR_ID_PATTERN,
        description="The CDR id (32 hex digits, `-<revision>` after the first, `-C` for a credit)",
        examples=[EXAMPLE_CDR_ID],
    ),
]
MonthPath = Annotated[
    str,
    Path(
        min_length=7,
        max_length=7,
        pattern=MONTH_PATTERN,
        description="YYYY-MM (local to time_zone)",
        examples=["2025-06"],
    ),
]


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# The names this server knows, as an enum: a pattern could not tell "Mars/Olympus" from
# a zone, and the document says exactly which values are accepted.
TimeZone = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        description="IANA time zone the month is local to",
        examples=["Europe/Amsterdam"],
        json_schema_extra={"enum": sorted(_time_zones())},
    ),
]


def _check_time_zone(name: str) -> None:
    if name not in _time_zones():
        raise range_error(f"unknown time zone {name!r}", "time_zone")


def _filters(
    since: datetime | None,
    until: datetime | None,
    site: str | None,
    station: str | None,
    id_tag: str | None,
    customer: str | None,
    credit: bool | None,
) -> cdr_store.CdrFilter:
    require_ordered(since, until)
    return cdr_store.CdrFilter(
        since=since,
        until=until,
        site_id=site,
        charge_point_id=station,
        id_tag=id_tag,
        customer=customer,
        credit=credit,
    )


Since = Annotated[
    Timestamp | None,
    Query(
        alias="from",
        description=f"CDRs that started at or after this time, earlier than `to`. "
        f"{TIMESTAMP_DESCRIPTION}",
    ),
]
Until = Annotated[
    Timestamp | None,
    Query(alias="to", description=f"CDRs that started before this time. {TIMESTAMP_DESCRIPTION}"),
]
CreditFilter = Annotated[
    bool | None, Query(description="true: only credit CDRs; false: only the others")
]


@router.get(
    "/v1/cdrs",
    response_model=CdrsPage,
    summary="List issued CDRs, oldest start first",
    description="Filters combine (AND); `from` must be earlier than `to` (else 422). Pages "
    "are walked with `cursor` = the previous page's `next_cursor`. Amounts are exact "
    "decimal strings; credit CDRs have negative amounts.",
)
async def list_cdrs(
    _principal: BillingDesk,
    conn: DbConn,
    since: Since = None,
    until: Until = None,
    site: SiteFilter = None,
    station: StationId = None,
    id_tag: IdTagFilter = None,
    customer: CustomerFilter = None,
    credit: CreditFilter = None,
    cursor: CdrCursor = None,
    limit: Annotated[
        int, Query(ge=1, le=cdr_store.MAX_LIMIT, description="Page size")
    ] = cdr_store.DEFAULT_LIMIT,
) -> CdrsPage:
    filters = _filters(since, until, site, station, id_tag, customer, credit)
    after = None
    if cursor is not None:
        position = decode_cdr_cursor(cursor)
        after = cdr_store.CdrPosition(position.start_date_time, position.cdr_id)
    page = await cdr_store.list_cdrs(conn, filters, after=after, limit=limit)
    next_cursor = None
    if page.next_after is not None:
        next_cursor = encode_cdr_cursor(
            CdrCursorPosition(page.next_after.start_date_time, page.next_after.cdr_id)
        )
    return CdrsPage(items=[CdrPublic.of(r) for r in page.items], next_cursor=next_cursor)


CSV_COLUMNS = (
    "cdr_id",
    "session_id",
    "credit",
    "credit_reference_id",
    "charge_point_id",
    "connector_id",
    "site_id",
    "id_tag",
    "customer",
    "start",
    "end",
    "energy_kwh",
    "currency",
    "total_excl_vat",
    "total_incl_vat",
)
# Rows per chunk written to the socket: few sends, memory bounded by the chunk.
CSV_CHUNK_ROWS = 1000


# A text cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV
# injection): such a cell gets a leading apostrophe, shown as text, never evaluated.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str | None) -> str:
    """A text cell safe to open in a spreadsheet (None: empty).

    >>> print(spreadsheet_text('=HYPERLINK("http://x","y")'))
    '=HYPERLINK("http://x","y")
    >>> spreadsheet_text("TAG-1"), spreadsheet_text(None)
    ('TAG-1', '')
    """
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_row(record: cdr_store.CdrRecord) -> list[Any]:
    """A CDR as the export's columns (amounts and kWh exact, times as OCPI writes them).
    Text that came from stations and drivers (ids, tags) is made spreadsheet-safe;
    numbers are written as they are (a credit's negative amounts stay numbers)."""
    return [
        record.cdr_id,
        spreadsheet_text(record.session_id),
        "true" if record.credit else "false",
        record.credit_reference_id or "",
        spreadsheet_text(record.charge_point_id),
        record.connector_id,
        spreadsheet_text(record.site_id),
        spreadsheet_text(record.id_tag),
        spreadsheet_text(record.customer),
        ocpi_datetime(record.start_date_time),
        ocpi_datetime(record.end_date_time),
        record.energy_kwh,
        spreadsheet_text(record.currency),
        record.total_excl_vat,
        record.total_incl_vat,
    ]


async def _csv_chunks(pool: DbPool, filters: cdr_store.CdrFilter) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    # The connection is taken here, while the response streams: a dependency's
    # connection would go back to the pool when the endpoint returns.
    async with pool.connection() as conn:
        async for record in cdr_store.stream_cdrs(conn, filters):
            writer.writerow(csv_row(record))
            rows += 1
            if rows % CSV_CHUNK_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


@router.get(
    "/v1/cdrs/export.csv",
    summary="Export issued CDRs as CSV (streamed)",
    description="The same filters as the listing, every matching CDR oldest start first, "
    "streamed as it is read (constant memory). Columns: " + ", ".join(CSV_COLUMNS) + ". "
    "Amounts and kWh are exact decimals (credits negative), times RFC 3339 UTC.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export_cdrs(
    _principal: BillingDesk,
    pool: DbPool,
    since: Since = None,
    until: Until = None,
    site: SiteFilter = None,
    station: StationId = None,
    id_tag: IdTagFilter = None,
    customer: CustomerFilter = None,
    credit: CreditFilter = None,
) -> StreamingResponse:
    filters = _filters(since, until, site, station, id_tag, customer, credit)
    return StreamingResponse(
        _csv_chunks(pool, filters),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
    )


@router.get(
    "/v1/cdrs/{cdr_id}",
    summary="One CDR exactly as issued (OCPI 2.2.1 JSON)",
    description="The stored CDR: numbers exactly as issued (never through a float).",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **NOT_FOUND,
    },
)
async def get_cdr(cdr_id: CdrIdPath, _principal: BillingDesk, conn: DbConn) -> Response:
    body = await cdr_store.get_cdr(conn, cdr_id)
    if body is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"CDR {cdr_id} not found")
    return Response(body, media_type="application/json")


# --------------------------------------------------------------------------- reviews


@router.get(
    "/v1/billing/reviews",
    response_model=ReviewsPage,
    summary="Sessions held for review, oldest start first",
    description="Sessions billing held (energy not exact, no stop time) and what was "
    "decided. Pages are walked with `cursor` = the previous page's `next_cursor`.",
)
async def list_reviews(
    _principal: BillingDesk,
    conn: DbConn,
    review_status: Annotated[
        review_store.ReviewStatus | None, Query(alias="status", description="Only this status")
    ] = None,
    cursor: ReviewCursor = None,
    limit: Annotated[
        int, Query(ge=1, le=cdr_store.MAX_LIMIT, description="Page size")
    ] = cdr_store.DEFAULT_LIMIT,
) -> ReviewsPage:
    after = None
    if cursor is not None:
        position = decode_review_cursor(cursor)
        after = review_store.ReviewPosition(position.started_at, position.session_id)
    page = await review_store.list_reviews(conn, review_status, after=after, limit=limit)
    next_cursor = None
    if page.next_after is not None:
        next_cursor = encode_review_cursor(
            ReviewCursorPosition(page.next_after.started_at, page.next_after.session_id)
        )
    return ReviewsPage(
        items=[ReviewPublic.model_validate(r) for r in page.items], next_cursor=next_cursor
    )


DECISION_RESPONSES = {**NOT_FOUND, **CONFLICT, **UNREADABLE_BODY}


@router.post(
    "/v1/billing/reviews/{session_id}/release",
    response_model=ReviewPublic,
    summary="Release a held session: bill it as measured",
    description="held -> released, audited with the API key's name and the note. "
    "The billing worker then bills the session as measured (its CDR: `cdr_id` once "
    "`settled_at`). Final: a session that is not held, or one without an energy figure "
    "(correct or write it off), answers 409.",
    responses=DECISION_RESPONSES,
)
async def release_review(
    session_id: ReleasePath,
    principal: BillingDesk,
    conn: DbConn,
    body: Annotated[ReleaseCreate | None, Body(description="Optional: a note")] = None,
) -> ReviewPublic:
    note = body.note if body is not None else None
    return await _decide(conn, session_id, "release", principal.name, note)


@router.post(
    "/v1/billing/reviews/{session_id}/correct",
    response_model=ReviewPublic,
    summary="Correct a held session's energy: bill the corrected figure",
    description="held -> corrected with `corrected_energy_wh` and the reason, audited "
    "with the API key's name. The billing worker then bills the corrected energy, spread "
    "as the meter samples rose (`energy_quality: corrected`, the decision in the CDR's "
    "`review`; `cdr_id` once `settled_at`). Final: a session that is not held answers 409.",
    responses=DECISION_RESPONSES,
)
async def correct_review(
    session_id: CorrectPath, principal: BillingDesk, conn: DbConn, body: CorrectionCreate
) -> ReviewPublic:
    return await _decide(
        conn, session_id, "correct", principal.name, body.note, body.corrected_energy_wh
    )


@router.post(
    "/v1/billing/reviews/{session_id}/write-off",
    response_model=ReviewPublic,
    summary="Write a held session off: never bill it",
    description="held -> written_off with the reason, audited with the API key's name. "
    "Never billed: the billing worker releases the payment hold, if any (`settled_at`). "
    "Final: a session that is not held answers 409.",
    responses=DECISION_RESPONSES,
)
async def write_off_review(
    session_id: WriteOffPath, principal: BillingDesk, conn: DbConn, body: WriteOffCreate
) -> ReviewPublic:
    return await _decide(conn, session_id, "write_off", principal.name, body.note)


async def _decide(
    conn: DbConn,
    session_id: str,
    action: review_store.ReviewAction,
    actor: str,
    note: str | None,
    corrected_energy_wh: int | None = None,
) -> ReviewPublic:
    try:
        record = await review_store.decide_review(
            conn,
            session_id,
            action,
            actor=actor,
            note=note,
            corrected_energy_wh=corrected_energy_wh,
        )
    except review_store.ReviewConflictError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    if record is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"session {session_id} is not under review")
    return ReviewPublic.model_validate(record)


# --------------------------------------------------------------------------- statements

STATEMENT_DESCRIPTION = (
    "The customer's CDRs that started in the month local to `time_zone` (default UTC), "
    "credit CDRs included (negative), oldest first, with totals per currency. A customer "
    "without CDRs that month has an empty statement."
)


async def _statement(
    conn: DbConn, customer: str, month: str, time_zone: str
) -> cdr_store.CdrStatement:
    _check_time_zone(time_zone)
    return await cdr_store.statement(conn, customer, month, time_zone)


# Declared before the JSON route: "{month}" would otherwise match "2025-06.html".
@router.get(
    "/v1/customers/{customer}/statements/{month}.html",
    summary="A customer's monthly statement as a printable HTML page",
    description=STATEMENT_DESCRIPTION,
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def statement_html(
    customer: CustomerPath,
    month: MonthPath,
    _principal: BillingDesk,
    conn: DbConn,
    time_zone: TimeZone = "UTC",
) -> HTMLResponse:
    return HTMLResponse(render_statement(await _statement(conn, customer, month, time_zone)))


@router.get(
    "/v1/customers/{customer}/statements/{month}",
    response_model=StatementPublic,
    summary="A customer's monthly statement",
    description=STATEMENT_DESCRIPTION,
)
async def statement_json(
    customer: CustomerPath,
    month: MonthPath,
    _principal: BillingDesk,
    conn: DbConn,
    time_zone: TimeZone = "UTC",
) -> StatementPublic:
    return StatementPublic.of(await _statement(conn, customer, month, time_zone))
