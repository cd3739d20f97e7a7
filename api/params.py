"""Parameter types shared by the routes, each validated as its OpenAPI schema says.

Text identifiers exclude control characters (NUL cannot be stored in PostgreSQL text);
timestamps are RFC 3339 with an explicit offset and a year in 1970-2999 (no integers,
no naive times, no dates whose arithmetic overflows); the pagination cursor is
the position where the previous page ended, in a form whose pattern admits only valid
positions.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, PlainValidator, WithJsonSchema

from bus.alerts import AlertKind, alert_id
from store import registry

MAX_ID_LENGTH = 64
INT32_MAX = 2**31 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)

# No C0/C1 control characters (NUL included) and no DEL.
ID_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]+$"
# A path segment additionally excludes "/" (it would address another route).
PATH_ID_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f/]+$"
TIMESTAMP_PATTERN = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Every match is a representable time (1653-5138): up to 16 digits before 1970, 17 after.
CURSOR_PATTERN = r"^(-?[0-9]{1,16}|[0-9]{17})-[0-9a-f]{32}$"
# An alert's id: 96 bits of SHA-256 in hex (bus.alerts.alert_id); its cursor likewise.
ALERT_ID_PATTERN = r"^[0-9a-f]{24}$"
ALERT_CURSOR_PATTERN = r"^(-?[0-9]{1,16}|[0-9]{17})-[0-9a-f]{24}$"
# A CDR's position: start_date_time and its id (billing.cdrs.CDR_ID_PATTERN).
CDR_CURSOR_PATTERN = r"^(-?[0-9]{1,16}|[0-9]{17})-[0-9A-F]{32}(-[1-9][0-9]{0,2})?(-C)?$"
# A review's position: the session's start and its id (a text id: any but control
# characters, "-" included, so the micros come first and end at the first "-" after them).
REVIEW_CURSOR_PATTERN = r"^(-?[0-9]{1,16}|[0-9]{17})-[^\u0000-\u001f\u007f-\u009f]{1,64}$"
MONTH_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
TIMESTAMP_DESCRIPTION = (
    "RFC 3339 date-time with an explicit offset (`Z` or `+01:00`; percent-encode `+`), "
    "year 1970-2999, at most microseconds"
)


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from an RFC 3339 string as :data:`TIMESTAMP_PATTERN` allows."""
    if not isinstance(value, str) or re.fullmatch(TIMESTAMP_PATTERN, value) is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, year 1970-2999")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError: e.g. Feb 30
    return parsed.astimezone(UTC)


Timestamp = Annotated[
    datetime,
    PlainValidator(parse_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": TIMESTAMP_PATTERN,
            "minLength": 20,
            "maxLength": 32,
        }
    ),
]


class CursorPosition(NamedTuple):
    """Where the previous page ended (the last row's sort key)."""

    started_at: datetime
    session_id: uuid.UUID


def _encode_position(at: datetime, key_hex: str) -> str:
    return f"{(at - EARLIEST) // timedelta(microseconds=1)}-{key_hex}"


def _decode_position(value: str, pattern: str) -> tuple[datetime, str]:
    if re.fullmatch(pattern, value) is None:
        raise ValueError("not a cursor: use next_cursor unchanged")
    micros, _, key_hex = value.rpartition("-")
    return EARLIEST + timedelta(microseconds=int(micros)), key_hex


def encode_api_cursor(position: CursorPosition) -> str:
    """``<microseconds since 1970 UTC>-<session id as 32 hex digits>``."""
    return _encode_position(position.started_at, position.session_id.hex)


def decode_api_cursor(value: str) -> CursorPosition:
    """Every string :data:`CURSOR_PATTERN` matches is a position (no hidden rules)."""
    at, session_hex = _decode_position(value, CURSOR_PATTERN)
    return CursorPosition(at, uuid.UUID(hex=session_hex))


class AlertCursorPosition(NamedTuple):
    """Where the previous page of alerts ended."""

    first_seen: datetime
    alert_id: str


def encode_alert_cursor(position: AlertCursorPosition) -> str:
    """``<first_seen in microseconds since 1970 UTC>-<alert id>``.

    >>> at = datetime(2026, 7, 1, 12, 0, 0, 5, tzinfo=UTC)
    >>> cursor = encode_alert_cursor(AlertCursorPosition(at, "0eff6be7305a02767152c117"))
    >>> cursor, decode_alert_cursor(cursor).first_seen == at
    ('1782907200000005-0eff6be7305a02767152c117', True)
    """
    return _encode_position(position.first_seen, position.alert_id)


def decode_alert_cursor(value: str) -> AlertCursorPosition:
    """Every string :data:`ALERT_CURSOR_PATTERN` matches is a position."""
    return AlertCursorPosition(*_decode_position(value, ALERT_CURSOR_PATTERN))


class CdrCursorPosition(NamedTuple):
    """Where the previous page of CDRs ended."""

    start_date_time: datetime
    cdr_id: str


def encode_cdr_cursor(position: CdrCursorPosition) -> str:
    """``<start_date_time in microseconds since 1970 UTC>-<cdr id>``.

    >>> at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    >>> cursor = encode_cdr_cursor(CdrCursorPosition(at, "0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11-2-C"))
    >>> cursor, decode_cdr_cursor(cursor) == (at, "0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11-2-C")
    ('1772463600000000-0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11-2-C', True)
    """
    return _encode_position(position.start_date_time, position.cdr_id)


def _split_position(value: str, pattern: str) -> tuple[datetime, str]:
    """A position whose key may hold "-": the micros end at the first "-" after them."""
    if re.fullmatch(pattern, value) is None:
        raise ValueError("not a cursor: use next_cursor unchanged")
    micros, _, key = value[1:].partition("-")
    return EARLIEST + timedelta(microseconds=int(value[0] + micros)), key


def decode_cdr_cursor(value: str) -> CdrCursorPosition:
    """Every string :data:`CDR_CURSOR_PATTERN` matches is a position."""
    return CdrCursorPosition(*_split_position(value, CDR_CURSOR_PATTERN))


class ReviewCursorPosition(NamedTuple):
    """Where the previous page of reviews ended."""

    started_at: datetime
    session_id: str


def encode_review_cursor(position: ReviewCursorPosition) -> str:
    """``<started_at in microseconds since 1970 UTC>-<session id>``.

    >>> at = datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)
    >>> cursor = encode_review_cursor(ReviewCursorPosition(at, "a-b"))
    >>> cursor, decode_review_cursor(cursor) == (at, "a-b")
    ('-1000000-a-b', True)
    """
    return _encode_position(position.started_at, position.session_id)


def decode_review_cursor(value: str) -> ReviewCursorPosition:
    """Every string :data:`REVIEW_CURSOR_PATTERN` matches is a position."""
    return ReviewCursorPosition(*_split_position(value, REVIEW_CURSOR_PATTERN))


EXAMPLE_STATION = "CP-1"
# The station the decommission operation names as its example (tests seed it).
EXAMPLE_RETIRED_STATION = "CP-RETIRED"
EXAMPLE_SITE = "DEPOT-1"
EXAMPLE_SESSION_ID = uuid.UUID("0b9d6f3e-5c1a-4e8f-9a2b-7d4c3e2f1a0b")
# A session still charging (the charging-needs example).
EXAMPLE_ACTIVE_SESSION_ID = uuid.UUID("6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
EXAMPLE_CUSTOMER = "ACME"
EXAMPLE_QUOTE_ID = uuid.UUID("4c9e2b71-8f3a-4d65-9b0e-5a7d1c2e3f40")
EXAMPLE_COMMAND_ID = uuid.UUID("6d2f8a14-3b7c-4e91-a05d-9c8b7a6f5e41")
# Sessions held for review, one per decision (each can be decided once; tests seed them).
EXAMPLE_HELD_SESSIONS = {
    "release": "5f0c8a8e-1c2b-4d4e-8f6a-3b2c1d0e9f01",
    "correct": "5f0c8a8e-1c2b-4d4e-8f6a-3b2c1d0e9f02",
    "write_off": "5f0c8a8e-1c2b-4d4e-8f6a-3b2c1d0e9f03",
}
# An overheating alert on the example station's connector 1 (tests seed it).
EXAMPLE_ALERT_FIRST_SEEN = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
EXAMPLE_ALERT_ID = alert_id(
    EXAMPLE_STATION, 1, AlertKind.CONNECTOR_OVERHEATING, EXAMPLE_ALERT_FIRST_SEEN
)


def text_id(param: Callable[..., Any], what: str, example: str) -> Any:
    """A text id as a ``Query`` or ``Path`` parameter: no control characters (in a
    path segment no ``/`` either)."""
    in_path = param is Path
    return param(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=PATH_ID_PATTERN if in_path else ID_PATTERN,
        description=f"{what} (no control characters{', no `/`' if in_path else ''})",
        examples=[example],
    )


StationId = Annotated[str | None, text_id(Query, "Charge point id", EXAMPLE_STATION)]
SiteFilter = Annotated[str | None, text_id(Query, "Site id", EXAMPLE_SITE)]
ChargePointPath = Annotated[str, text_id(Path, "Charge point id", EXAMPLE_STATION)]
SitePath = Annotated[str, text_id(Path, "Site id", EXAMPLE_SITE)]
ConnectorPath = Annotated[
    int, Path(ge=0, le=INT32_MAX, description="OCPP 1.6 connector / 2.0.1 EVSE id", examples=[1])
]
ConnectorFilter = Annotated[
    int | None, Query(ge=0, le=INT32_MAX, description="Only this connector")
]


def position_cursor(position: str) -> Any:
    """The ``cursor`` query parameter of a page of (time, 32-hex id) positions
    (:data:`CURSOR_PATTERN`); ``position`` says what the two parts are."""
    return Query(
        min_length=34,
        max_length=50,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page, passed unchanged: where that "
        f"page ended, as `{position}`",
    )


Cursor = Annotated[
    str | None,
    position_cursor("<started_at in microseconds since 1970 UTC>-<session_id as 32 hex digits>"),
]

# A page position of (time, 32-hex id): commands, message history, audit log.
PositionCursor = Annotated[
    str | None, position_cursor("<time in microseconds since 1970 UTC>-<id as 32 hex digits>")
]
Since = Annotated[
    Timestamp | None, Query(description=f"at or after this time. {TIMESTAMP_DESCRIPTION}")
]
Until = Annotated[Timestamp | None, Query(description=f"before this time. {TIMESTAMP_DESCRIPTION}")]


def cursor_after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a :data:`CURSOR_PATTERN` cursor names (None: the first page)."""
    if cursor is None:
        return None
    position = decode_api_cursor(cursor)
    return position.started_at, position.session_id


def next_cursor(after: tuple[datetime, uuid.UUID] | None) -> str | None:
    """The cursor of the next page, after its last row (None: this is the last page)."""
    return None if after is None else encode_api_cursor(CursorPosition(*after))


AlertCursor = Annotated[
    str | None,
    Query(
        min_length=26,
        max_length=42,
        pattern=ALERT_CURSOR_PATTERN,
        description="`next_cursor` of the previous page, passed unchanged: where that "
        "page ended, as `<first_seen in microseconds since 1970 UTC>-<alert_id>`",
    ),
]
AlertIdPath = Annotated[
    str,
    Path(
        min_length=24,
        max_length=24,
        pattern=ALERT_ID_PATTERN,
        description="The alert's id (24 hex digits, derived from station, connector, kind "
        "and first_seen)",
        examples=[EXAMPLE_ALERT_ID],
    ),
]


CdrCursor = Annotated[
    str | None,
    Query(
        min_length=34,
        max_length=57,
        pattern=CDR_CURSOR_PATTERN,
        description="`next_cursor` of the previous page, passed unchanged: where that "
        "page ended, as `<start_date_time in microseconds since 1970 UTC>-<cdr id>`",
    ),
]
ReviewCursor = Annotated[
    str | None,
    Query(
        min_length=3,
        max_length=82,
        pattern=REVIEW_CURSOR_PATTERN,
        description="`next_cursor` of the previous page, passed unchanged: where that "
        "page ended, as `<started_at in microseconds since 1970 UTC>-<session id>`",
    ),
]


def require_ordered(
    start: datetime | None, end: datetime | None, names: tuple[str, str] = ("from", "to")
) -> None:
    """``from`` must be earlier than ``to`` (raises the 422 every range answers);
    ``names`` are the two parameters' names."""
    if start is not None and end is not None and start >= end:
        raise range_error(f"'{names[0]}' must be earlier than '{names[1]}'", names[0])


def range_error(reason: str, name: str) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", name),
                "msg": reason,
                "input": None,
            }
        ]
    )


def patch_changes(body: Any, not_null: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body sent (JSON Merge Patch style: absent = unchanged, null =
    cleared); a null for a field that cannot be empty is a 422."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    nulls = [name for name in not_null if name in changes and changes[name] is None]
    if nulls:
        raise RequestValidationError(
            [
                {"loc": ("body", name), "msg": "may not be null", "type": "value_error"}
                for name in nulls
            ]
        )
    return changes


def one_of(*allowed: int) -> AfterValidator:
    """With ``Strict()`` and an ``enum`` JSON Schema: an integer among ``allowed``, JSON
    booleans refused (a ``Literal`` of integers would take ``false`` for 0)."""

    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)


# The registry's pages (stations, sites, id tags, meters): ordered by id, the cursor is
# the last id of the previous page.
RegistryLimit = Annotated[int, Query(ge=1, le=registry.MAX_LIMIT, description="Page size")]


def id_cursor(pattern: str) -> Any:
    """The ``cursor`` of a page ordered by an id matching ``pattern``."""
    return Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=pattern,
        description="`next_cursor` of the previous page (the last id it held)",
    )
