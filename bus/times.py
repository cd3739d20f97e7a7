"""Time on the wire: the current UTC instant and RFC 3339 timestamps.

OCPP, the meter readings and the API all speak RFC 3339 with an offset; every
process parses and formats them here so that a timestamp the gateway accepts is one
the flows and the API accept too.

>>> parse_rfc3339("2026-03-01T12:00:00.123456789Z")
datetime.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
>>> format_rfc3339(parse_rfc3339("2026-03-01T13:00:00+01:00"))
'2026-03-01T12:00:00.000Z'
>>> parse_rfc3339("2026-03-01T12:00:00")
Traceback (most recent call last):
...
ValueError: timestamp without UTC offset: '2026-03-01T12:00:00'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Python keeps microseconds; stations send up to nanoseconds.
_FRACTION = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$")


def utc_now() -> datetime:
    """The process's clock, for what is not telemetry (deadlines, expiry, logs)."""
    return datetime.now(UTC)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime; fractions beyond microseconds are
    cut. Raises ValueError for anything else, a missing offset included."""
    text = value.strip().upper().replace("Z", "+00:00")
    match = _FRACTION.match(text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {value!r}")
    return parsed


def format_rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, as OCPP examples write it."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
