"""Tariffs and where they apply: store OCPI 2.2.1 Tariffs (each POST of an id is a new
version; versions never change), assign them to connectors, stations, sites, customer
groups or everywhere over a time window, end assignments, and ask which tariff applies
to a session and why. Write: billing, admin (audited: the API key's name); read:
billing, operator, admin.

Bodies and answers carry prices as exact JSON numbers (read with ``parse_float=Decimal``,
written by msgspec): they never pass through a float.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel

from api.deps import DbConn, TariffReader, TariffWriter
from api.params import (
    ID_PATTERN,
    INT32_MAX,
    MAX_ID_LENGTH,
    TIMESTAMP_DESCRIPTION,
    Timestamp,
)
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.tariffs import (
    ASSIGNMENT_CURSOR_PATTERN,
    EXAMPLE_TARIFF_BODY,
    MAX_TARGET_LENGTH,
    TARIFF_ID_PATTERN,
    TariffAssignmentCreate,
    TariffAssignmentPublic,
    TariffAssignmentsPage,
    TariffPublic,
    TariffResolutionPublic,
    TariffsPage,
    TariffVersionsPublic,
)
from billing.preview import PreviewError, decode_json
from billing.tariffs import TariffError
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store

router = APIRouter(tags=["tariffs"], responses=AUTHENTICATED)

MAX_TARIFF_BYTES = 1024 * 1024  # a tariff is a few KB; a thousand elements still fit
RESERVED_IDS = frozenset({"resolve"})  # GET /v1/tariffs/resolve is the resolver
_ENCODER = msgspec.json.Encoder(decimal_format="number")

_TARIFF_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "An OCPI 2.2.1 Tariff object (module Tariffs)",
                "required": ["country_code", "party_id", "id", "currency", "elements"],
                "properties": {
                    "country_code": {"type": "string", "minLength": 2, "maxLength": 2},
                    "party_id": {"type": "string", "minLength": 3, "maxLength": 3},
                    "id": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 36,
                        "pattern": TARIFF_ID_PATTERN,
                    },
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "elements": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                    "last_updated": {"type": "string", "format": "date-time"},
                },
            },
            "examples": {"standard": {"value": EXAMPLE_TARIFF_BODY}},
        }
    },
}

TariffIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=36,
        pattern=TARIFF_ID_PATTERN,
        description="The OCPI Tariff's id",
        examples=["STANDARD"],
    ),
]
AssignmentIdPath = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="The assignment's id", examples=[1])
]
TimestampQuery = Annotated[Timestamp | None, Query(description=TIMESTAMP_DESCRIPTION)]


def _exact(model: BaseModel, status_code: int = status.HTTP_200_OK) -> Response:
    """The model as JSON, Decimals as exact JSON numbers."""
    return Response(
        _ENCODER.encode(model.model_dump()), status_code=status_code, media_type="application/json"
    )


def _tariff(record: tariff_store.TariffRecord) -> TariffPublic:
    return TariffPublic(
        tariff_id=record.tariff_id,
        version=record.version,
        currency=record.currency,
        created_at=record.created_at,
        created_by=record.created_by,
        tariff=record.body,
    )


def _assignment(record: assignment_store.AssignmentRecord) -> TariffAssignmentPublic:
    return TariffAssignmentPublic.model_validate(
        {name: getattr(record, name) for name in TariffAssignmentPublic.model_fields}
    )


def _unprocessable(detail: str) -> ProblemError:
    return ProblemError(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


# --------------------------------------------------------------------------- tariffs


@router.post(
    "/v1/tariffs",
    status_code=status.HTTP_201_CREATED,
    response_model=TariffPublic,
    summary="Store a tariff (a new version when its id exists)",
    description="The body is an OCPI 2.2.1 Tariff; its `id` is the tariff's id. A new id "
    "is version 1; storing an id again adds the next version (versions never change: a "
    "session keeps the version it started under). 422 names each invalid field "
    "(`billing.tariffs.parse_tariff`).",
    responses={**UNREADABLE_BODY, 413: {"description": "Body larger than 1 MiB"}},
    openapi_extra={"requestBody": _TARIFF_BODY},
)
async def create_tariff(principal: TariffWriter, conn: DbConn, request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_TARIFF_BYTES:
        raise ProblemError(status.HTTP_413_CONTENT_TOO_LARGE, "the tariff is larger than 1 MiB")
    try:
        body = decode_json(raw, "the body")
    except PreviewError as exc:
        raise _unprocessable(str(exc)) from None
    tariff_id = body.get("id") if isinstance(body, dict) else None
    if isinstance(tariff_id, str) and (
        tariff_id in RESERVED_IDS or re.fullmatch(TARIFF_ID_PATTERN, tariff_id) is None
    ):
        raise _unprocessable(
            "invalid OCPI 2.2.1 Tariff: id: must not be 'resolve', contain '/' or control "
            "characters (it is a path segment of this API)"
        )
    try:
        record = await tariff_store.create_tariff(conn, body, created_by=principal.name)
    except (TariffError, tariff_store.UnstorableError) as exc:
        raise _unprocessable(str(exc)) from None
    return _exact(_tariff(record), status.HTTP_201_CREATED)


@router.get(
    "/v1/tariffs",
    response_model=TariffsPage,
    summary="List tariffs (the latest version of each), by id",
    description="Pages are walked with `cursor` = the previous page's `next_cursor`.",
)
async def list_tariffs(
    _principal: TariffReader,
    conn: DbConn,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=36,
            pattern=TARIFF_ID_PATTERN,
            description="`next_cursor` of the previous page (the last tariff id it held)",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=tariff_store.MAX_LIMIT, description="Page size")
    ] = tariff_store.DEFAULT_LIMIT,
) -> Response:
    page = await tariff_store.list_tariffs(conn, after=cursor, limit=limit)
    return _exact(TariffsPage(items=[_tariff(t) for t in page.items], next_cursor=page.next_after))


@router.get(
    "/v1/tariffs/resolve",
    response_model=TariffResolutionPublic,
    summary="Which tariff applies to a session, and why",
    description="The tariff a session starting at `at` (default now) on the station's "
    "connector is priced under for a driver in `customer_group`: of the assignments valid "
    "at `at` (valid_from inclusive, valid_until exclusive) the most specific wins: "
    "connector > station > the station's site > everywhere; at each level the driver's "
    "group before no group; a `customer_group` assignment beats only the default. The "
    "version is the latest created at or before `at` that is in force at `at` (its "
    "start/end_date_time); an assignment whose tariff has none is passed over. 404 when "
    "no tariff applies.",
    responses=NOT_FOUND,
)
async def resolve_tariff(
    _principal: TariffReader,
    conn: DbConn,
    station: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            pattern=ID_PATTERN,
            description="Charge point id",
            examples=["CP-1"],
        ),
    ],
    connector: Annotated[
        int | None,
        Query(ge=0, le=INT32_MAX, description="Connector / EVSE id (omit: station level)"),
    ] = None,
    customer_group: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            pattern=ID_PATTERN,
            description="The driver's customer group (omit: none)",
        ),
    ] = None,
    at: TimestampQuery = None,
) -> Response:
    instant = at or datetime.now(UTC)
    found = await assignment_store.resolve_tariff(conn, station, connector, customer_group, instant)
    if found is None:
        raise ProblemError(
            status.HTTP_404_NOT_FOUND,
            f"no tariff applies to station {station!r} at {instant.isoformat()}",
        )
    record = await tariff_store.get_tariff(conn, found.applied.tariff_id, found.applied.version)
    assert record is not None  # versions are never deleted
    chosen = found.assignment
    rank = assignment_store.precedence(chosen.scope, chosen.customer_group is not None)
    reason = (
        f"{chosen.scope} assignment {chosen.assignment_id}"
        + (f" for {chosen.target}" if chosen.target else "")
        + (f" (group {chosen.customer_group})" if chosen.customer_group else "")
        + f" is the most specific valid at {instant.isoformat()}; version {record.version}"
        " is the latest in force then"
    )
    return _exact(
        TariffResolutionPublic(
            tariff=_tariff(record),
            assignment=_assignment(chosen),
            precedence=rank,
            site_id=found.site_id,
            passed_over=[_assignment(a) for a in found.passed_over],
            reason=reason,
        )
    )


@router.get(
    "/v1/tariffs/{tariff_id}",
    response_model=TariffPublic,
    summary="One tariff: the latest version, or `version`",
    responses=NOT_FOUND,
)
async def get_tariff(
    tariff_id: TariffIdPath,
    _principal: TariffReader,
    conn: DbConn,
    version: Annotated[
        int | None, Query(ge=1, le=INT32_MAX, description="This version (omit: the latest)")
    ] = None,
) -> Response:
    record = await tariff_store.get_tariff(conn, tariff_id, version)
    if record is None:
        which = f"version {version} of tariff" if version is not None else "tariff"
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"{which} {tariff_id!r} not found")
    return _exact(_tariff(record))


@router.get(
    "/v1/tariffs/{tariff_id}/versions",
    response_model=TariffVersionsPublic,
    summary="Every version of a tariff, oldest first",
    responses=NOT_FOUND,
)
async def tariff_versions(
    tariff_id: TariffIdPath, _principal: TariffReader, conn: DbConn
) -> Response:
    records = await tariff_store.tariff_versions(conn, tariff_id)
    if not records:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"tariff {tariff_id!r} not found")
    return _exact(TariffVersionsPublic(tariff_id=tariff_id, versions=[_tariff(r) for r in records]))


# --------------------------------------------------------------------------- assignments


@router.post(
    "/v1/tariff-assignments",
    status_code=status.HTTP_201_CREATED,
    response_model=TariffAssignmentPublic,
    summary="Assign a tariff to a connector, station, site, customer group or everywhere",
    description="From `valid_from` (inclusive, default now) until `valid_until` "
    "(exclusive; null = until ended). 409 when an assignment with the same scope, target "
    "and customer_group overlaps that window; 422 for a tariff that does not exist or a "
    "target that does not fit the scope.",
    responses={**CONFLICT, **UNREADABLE_BODY},
)
async def create_assignment(
    body: TariffAssignmentCreate, principal: TariffWriter, conn: DbConn
) -> TariffAssignmentPublic:
    try:
        record = await assignment_store.assign(
            conn,
            tariff_id=body.tariff_id,
            scope=body.scope,
            target=body.target,
            customer_group=body.customer_group,
            valid_from=body.valid_from or datetime.now(UTC),
            valid_until=body.valid_until,
            created_by=principal.name,
        )
    except tariff_store.OverlapError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    except tariff_store.TariffStoreError as exc:
        raise _unprocessable(str(exc)) from None
    return _assignment(record)


@router.get(
    "/v1/tariff-assignments",
    response_model=TariffAssignmentsPage,
    summary="List tariff assignments, oldest first",
    description="Filters combine (AND); ended assignments are listed too (history).",
)
async def list_assignments(
    _principal: TariffReader,
    conn: DbConn,
    scope: Annotated[tariff_store.Scope | None, Query(description="Only this scope")] = None,
    target: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_TARGET_LENGTH,
            pattern=ID_PATTERN,
            description="Only this target",
        ),
    ] = None,
    tariff: Annotated[
        str | None,
        Query(min_length=1, max_length=36, pattern=TARIFF_ID_PATTERN, description="Tariff id"),
    ] = None,
    active_at: Annotated[
        Timestamp | None,
        Query(description=f"Only those valid at this time. {TIMESTAMP_DESCRIPTION}"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=18,
            pattern=ASSIGNMENT_CURSOR_PATTERN,
            description="`next_cursor` of the previous page (the last assignment id)",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=tariff_store.MAX_LIMIT, description="Page size")
    ] = tariff_store.DEFAULT_LIMIT,
) -> TariffAssignmentsPage:
    filters = assignment_store.AssignmentFilter(
        scope=scope, target=target, tariff_id=tariff, active_at=active_at
    )
    page = await assignment_store.list_assignments(
        conn, filters, after=int(cursor) if cursor else None, limit=limit
    )
    return TariffAssignmentsPage(
        items=[_assignment(a) for a in page.items],
        next_cursor=None if page.next_after is None else str(page.next_after),
    )


@router.delete(
    "/v1/tariff-assignments/{assignment_id}",
    response_model=TariffAssignmentPublic,
    summary="End an assignment (now); it stays in the history",
    description="Sets `valid_until` to now (`ended_by` = the API key's name). One that has "
    "not begun gets `valid_until` = `valid_from`: it never applies. Ending an assignment "
    "that has ended already changes nothing and answers it as it is.",
    responses=NOT_FOUND,
)
async def end_assignment(
    assignment_id: AssignmentIdPath, principal: TariffWriter, conn: DbConn
) -> TariffAssignmentPublic:
    record = await assignment_store.end_assignment(conn, assignment_id, ended_by=principal.name)
    if record is None:
        raise ProblemError(
            status.HTTP_404_NOT_FOUND, f"tariff assignment {assignment_id} not found"
        )
    return _assignment(record)
