"""Charging sessions (read-only) and their cost: roles billing, operator, admin."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import HTMLResponse

from api.deps import DbConn, SessionReader
from api.params import (
    EXAMPLE_SESSION_ID,
    TIMESTAMP_DESCRIPTION,
    Cursor,
    CursorPosition,
    StationId,
    Timestamp,
    decode_api_cursor,
    encode_api_cursor,
    require_ordered,
)
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, ProblemError
from api.schemas.sessions import (
    MoneyPublic,
    ReceiptPublic,
    SessionCostPublic,
    SessionPublic,
    SessionsPage,
)
from billing.cost import price_session
from billing.money import from_minor
from billing.preview import decode_json
from billing.receipts import receipt, receipt_html
from billing.session_usage import UsageError
from bus.times import parse_rfc3339
from invoicing.pricing import StoredSession, tariff_of, usage_of
from store import cdrs as cdr_store
from store import payments as payment_store
from store import sessions as session_store

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=AUTHENTICATED)


@router.get(
    "",
    response_model=SessionsPage,
    summary="List sessions, newest first",
    description="`from` must be earlier than `to` (else 422). Pages are walked with "
    "`cursor` = the previous page's `next_cursor`.",
)
async def list_sessions(
    _principal: SessionReader,
    conn: DbConn,
    station: StationId = None,
    started_from: Annotated[
        Timestamp | None,
        Query(
            alias="from",
            description=f"Sessions started at or after this time, earlier than `to`. "
            f"{TIMESTAMP_DESCRIPTION}",
        ),
    ] = None,
    started_to: Annotated[
        Timestamp | None,
        Query(
            alias="to", description=f"Sessions started before this time. {TIMESTAMP_DESCRIPTION}"
        ),
    ] = None,
    session_status: Annotated[Literal["active", "closed"] | None, Query(alias="status")] = None,
    cursor: Cursor = None,
    limit: Annotated[
        int, Query(ge=1, le=session_store.MAX_LIMIT, description="Page size")
    ] = session_store.DEFAULT_LIMIT,
) -> SessionsPage:
    require_ordered(started_from, started_to)
    filters = session_store.SessionFilter(
        charge_point_id=station,
        started_from=started_from,
        started_to=started_to,
        status=session_status,
    )
    after = None
    if cursor is not None:
        position = decode_api_cursor(cursor)
        after = session_store.encode_cursor(position.started_at, position.session_id)
    page = await session_store.list_sessions(conn, filters, cursor=after, limit=limit)
    next_cursor = None
    if page.next_cursor is not None:
        next_cursor = encode_api_cursor(
            CursorPosition(*session_store.decode_cursor(page.next_cursor))
        )
    return SessionsPage(
        items=[SessionPublic.model_validate(item) for item in page.items],
        next_cursor=next_cursor,
    )


@router.get(
    "/{session_id}",
    response_model=SessionPublic,
    summary="One session",
    responses=NOT_FOUND,
)
async def get_session(
    session_id: Annotated[
        uuid.UUID, Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)])
    ],
    _principal: SessionReader,
    conn: DbConn,
) -> SessionPublic:
    record = await session_store.get_session(conn, session_id)
    if record is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    return SessionPublic.model_validate(record)


def _stored(record: session_store.SessionRecord) -> StoredSession:
    return StoredSession(
        session_id=str(record.session_id),
        charge_point_id=record.charge_point_id,
        connector_id=record.connector_id,
        transaction_id=record.transaction_id,
        id_tag=record.id_tag,
        started_at=record.started_at,
        stopped_at=record.stopped_at,
        meter_start_wh=record.meter_start_wh,
        meter_stop_wh=record.meter_stop_wh,
        energy_wh=record.energy_wh,
    )


@router.get(
    "/{session_id}/cost",
    response_model=SessionCostPublic,
    summary="A session's cost: running while it charges, the CDR's once billed",
    description="While the session charges: priced under its tariff (the one quoted to the "
    "driver, else the one assigned at its start) up to its last register reading (`as_of`, "
    "telemetry time). Once billed: the CDR's totals (`final`). 404: no such session; 409: "
    "no tariff applies, or the session cannot be priced (the reason in `detail`).",
    responses={**NOT_FOUND, **CONFLICT},
)
async def get_session_cost(
    session_id: Annotated[
        uuid.UUID, Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)])
    ],
    _principal: SessionReader,
    conn: DbConn,
) -> SessionCostPublic:
    record = await session_store.get_session(conn, session_id)
    if record is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
    issued = await cdr_store.session_cdr(conn, str(session_id))
    if issued is not None:
        cdr = decode_json(issued, "the stored CDR")
        return SessionCostPublic(
            session_id=session_id,
            status=record.status,
            final=True,
            cdr_id=cdr["id"],
            as_of=parse_rfc3339(cdr["end_date_time"]),
            tariff_id=cdr["tariffs"][0]["id"],
            currency=cdr["currency"],
            total_cost=MoneyPublic(**cdr["total_cost"]),
            total_energy_kwh=cdr["total_energy"],
            total_time_h=cdr["total_time"],
            total_parking_time_h=cdr["total_parking_time"],
        )
    stored = _stored(record)
    applied = await tariff_of(conn, stored)
    if applied is None:
        raise ProblemError(status.HTTP_409_CONFLICT, "no tariff applies to the session")
    try:
        usage, _site = await usage_of(conn, stored)
    except UsageError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, f"cannot be priced: {exc}") from None
    priced = price_session(applied.tariff, usage)
    return SessionCostPublic(
        session_id=session_id,
        status=record.status,
        final=False,
        cdr_id=None,
        as_of=usage.stop,
        tariff_id=applied.tariff_id,
        currency=priced.currency,
        total_cost=MoneyPublic(
            excl_vat=priced.total_cost.excl_vat, incl_vat=priced.total_cost.incl_vat
        ),
        total_energy_kwh=priced.total_energy_kwh,
        total_time_h=priced.total_time_h.quantize(Decimal("0.0001")),
        total_parking_time_h=priced.total_parking_time_h.quantize(Decimal("0.0001")),
    )


async def _receipt(conn: Any, session_id: uuid.UUID) -> dict[str, Any]:
    issued = await cdr_store.session_cdr(conn, str(session_id))
    if issued is None:
        if await session_store.get_session(conn, session_id) is None:
            raise ProblemError(status.HTTP_404_NOT_FOUND, f"session {session_id} not found")
        raise ProblemError(status.HTTP_409_CONFLICT, f"session {session_id} is not billed yet")
    found = await payment_store.payment_summary(conn, str(session_id))
    payment = None
    if found is not None:
        provider, state, currency, captured, refunded = found
        payment = {
            "provider": provider,
            "status": state,
            "captured": from_minor(captured, currency),
            "refunded": from_minor(refunded, currency),
        }
    return receipt(decode_json(issued, "the stored CDR"), payment)


@router.get(
    "/{session_id}/receipt",
    response_model=ReceiptPublic,
    summary="The driver's receipt: lines, VAT per rate, totals, payment (from the CDR)",
    description="409: the session is not billed yet (active, held for review, credited).",
    responses={**NOT_FOUND, **CONFLICT},
)
async def get_receipt(
    session_id: Annotated[
        uuid.UUID, Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)])
    ],
    _principal: SessionReader,
    conn: DbConn,
) -> ReceiptPublic:
    return ReceiptPublic.model_validate(await _receipt(conn, session_id))


@router.get(
    "/{session_id}/receipt.html",
    response_class=HTMLResponse,
    summary="The driver's receipt as a printable page",
    responses={**NOT_FOUND, **CONFLICT, 200: {"content": {"text/html": {}}}},
)
async def get_receipt_html(
    session_id: Annotated[
        uuid.UUID, Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)])
    ],
    _principal: SessionReader,
    conn: DbConn,
) -> HTMLResponse:
    return HTMLResponse(receipt_html(await _receipt(conn, session_id)))
