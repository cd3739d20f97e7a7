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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import PlainValidator, WithJsonSchema

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


def encode_api_cursor(position: CursorPosition) -> str:
    """``<microseconds since 1970 UTC>-<session id as 32 hex digits>``."""
    micros = (position.started_at - EARLIEST) // timedelta(microseconds=1)
    return f"{micros}-{position.session_id.hex}"


def decode_api_cursor(value: str) -> CursorPosition:
    """Every string :data:`CURSOR_PATTERN` matches is a position (no hidden rules)."""
    match = re.fullmatch(CURSOR_PATTERN, value)
    if match is None:
        raise ValueError("not a cursor: use next_cursor unchanged")
    micros, _, session_hex = value.rpartition("-")
    return CursorPosition(
        EARLIEST + timedelta(microseconds=int(micros)), uuid.UUID(hex=session_hex)
    )


EXAMPLE_STATION = "CP-1"
EXAMPLE_SITE = "DEPOT-1"
EXAMPLE_SESSION_ID = uuid.UUID("0b9d6f3e-5c1a-4e8f-9a2b-7d4c3e2f1a0b")

StationId = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Charge point id (no control characters)",
        examples=[EXAMPLE_STATION],
    ),
]
SiteFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Site id (no control characters)",
        examples=[EXAMPLE_SITE],
    ),
]
ChargePointPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=PATH_ID_PATTERN,
        description="Charge point id (no control characters, no `/`)",
        examples=[EXAMPLE_STATION],
    ),
]
SitePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=PATH_ID_PATTERN,
        description="Site id (no control characters, no `/`)",
        examples=[EXAMPLE_SITE],
    ),
]
ConnectorPath = Annotated[
    int, Path(ge=0, le=INT32_MAX, description="OCPP 1.6 connector / 2.0.1 EVSE id", examples=[1])
]
ConnectorFilter = Annotated[
    int | None, Query(ge=0, le=INT32_MAX, description="Only this connector")
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=34,
        max_length=50,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page, passed unchanged: where that "
        "page ended, as `<started_at in microseconds since 1970 UTC>-"
        "<session_id as 32 hex digits>`",
    ),
]


def require_ordered(start: datetime | None, end: datetime | None) -> None:
    """``from`` must be earlier than ``to`` (raises the 422 every range answers)."""
    if start is not None and end is not None and start >= end:
        raise range_error("'from' must be earlier than 'to'", "from")


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
