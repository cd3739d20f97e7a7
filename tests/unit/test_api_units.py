"""Pure pieces of the API: key parsing, cursors, filters, response models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api.schemas.sessions import SessionPublic
from store.api_keys import ROLES, create_api_key, parse_api_key
from store.sessions import (
    InvalidCursorError,
    SessionFilter,
    SessionRecord,
    decode_cursor,
    encode_cursor,
)


def test_parse_api_key_splits_id_and_secret_with_underscores_in_secret() -> None:
    assert parse_api_key("cf_abc123_se_cr-et") == ("abc123", "se_cr-et")


@pytest.mark.parametrize(
    "presented", ["", "cf_", "cf_abc", "cf_abc_", "cf__secret", "xx_abc_secret", "abc_secret"]
)
def test_parse_api_key_rejects_malformed(presented: str) -> None:
    assert parse_api_key(presented) is None


def test_unknown_role_is_rejected_before_touching_the_database() -> None:
    with pytest.raises(ValueError, match="unknown role 'root'"):
        create_api_key("postgresql://nobody@127.0.0.1:1/none", "x", "root")
    assert {"admin", "operator", "maintenance", "billing", "public"} == ROLES


def test_cursor_round_trip_is_urlsafe() -> None:
    started = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    sid = uuid.uuid4()
    cursor = encode_cursor(started, sid)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == (started, sid)


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "bm90IGpzb24", "eyJhIjogMX0", encode_cursor(datetime(2025, 1, 1), uuid.uuid4())],
)
def test_invalid_cursors_raise(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)


def test_filter_validation() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="earlier"):
        SessionFilter(started_from=t, started_to=t)
    with pytest.raises(ValueError, match="timezone"):
        SessionFilter(started_from=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="status"):
        SessionFilter(status="open")  # type: ignore[arg-type]
    SessionFilter(started_from=t, started_to=t + timedelta(seconds=1), status="closed")


def test_session_public_from_record() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    record = SessionRecord(
        session_id=uuid.uuid4(),
        charge_point_id="CP-1",
        connector_id=1,
        transaction_id="7",
        id_tag="TAG",
        status="active",
        started_at=t,
        stopped_at=None,
        duration_s=None,
        meter_start_wh=10,
        meter_stop_wh=None,
        energy_wh=None,
        energy_source=None,
        quality="exact",
        quality_reasons=[],
        stop_reason=None,
        sample_count=0,
    )
    public = SessionPublic.model_validate(record)
    assert public.session_id == record.session_id
    assert public.model_dump(mode="json")["started_at"] == "2025-01-01T00:00:00Z"


def test_api_cursor_round_trip_and_every_pattern_match_is_a_position() -> None:
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from api.params import CURSOR_PATTERN, CursorPosition, decode_api_cursor, encode_api_cursor

    for started in (
        datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1700, 1, 1, tzinfo=UTC),
        datetime(4000, 1, 1, tzinfo=UTC),
    ):
        position = CursorPosition(started, uuid.uuid4())
        cursor = encode_api_cursor(position)
        assert re.fullmatch(CURSOR_PATTERN, cursor), cursor
        assert decode_api_cursor(cursor) == position

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
    def every_match_decodes(text: str) -> None:
        decoded = decode_api_cursor(text)
        assert decoded.started_at.tzinfo is not None

    every_match_decodes()
    for extreme in ("-" + "9" * 16, "9" * 17):
        assert decode_api_cursor(f"{extreme}-{'f' * 32}").started_at.year in (1653, 5138)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T08:00:00Z", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        ("2025-06-01T10:00:00.5+02:00", datetime(2025, 6, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("1970-01-01T00:00:00+01:00", datetime(1969, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_rfc3339_with_offset(text: str, expected: datetime) -> None:
    from api.params import parse_timestamp

    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "2025-06-01T08:00:00",
        "1700000000",
        1700000000,
        None,
        "2025-02-29T00:00:00Z",
        "2025-06-01 08:00:00Z",
        "3000-01-01T00:00:00Z",
    ],
)
def test_parse_timestamp_rejects_everything_else(value: object) -> None:
    from api.params import parse_timestamp

    with pytest.raises(ValueError, match=r"RFC 3339|day is out of range"):
        parse_timestamp(value)


def test_alert_cursor_round_trip_and_every_pattern_match_is_a_position() -> None:
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from api.params import (
        ALERT_CURSOR_PATTERN,
        ALERT_ID_PATTERN,
        AlertCursorPosition,
        decode_alert_cursor,
        encode_alert_cursor,
    )
    from bus.alerts import AlertKind, alert_id

    for first_seen in (
        datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(4000, 1, 1, tzinfo=UTC),
    ):
        # Every id the faults flow makes fits the path and cursor patterns.
        an_id = alert_id("CP/1 ü", 3, AlertKind.METER_FAULT, first_seen)
        assert re.fullmatch(ALERT_ID_PATTERN, an_id), an_id
        position = AlertCursorPosition(first_seen, an_id)
        cursor = encode_alert_cursor(position)
        assert re.fullmatch(ALERT_CURSOR_PATTERN, cursor), cursor
        assert decode_alert_cursor(cursor) == position

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(ALERT_CURSOR_PATTERN, fullmatch=True))
    def every_match_decodes(text: str) -> None:
        decoded = decode_alert_cursor(text)
        assert decoded.first_seen.tzinfo is not None
        assert re.fullmatch(ALERT_ID_PATTERN, decoded.alert_id)

    every_match_decodes()
    with pytest.raises(ValueError, match="not a cursor"):
        decode_alert_cursor(f"12-{'0' * 32}")  # a sessions cursor


@pytest.mark.parametrize(
    ("note", "accepted"),
    [
        (None, True),
        ("line one\n\tline two", True),
        ("x" * 2000, True),
        ("x" * 2001, False),
        ("nul\x00", False),
        ("escape\x1b[31m", False),
        ("c1\x85", False),
        ("lone \ud800 surrogate", False),
    ],
)
def test_alert_action_note_is_bounded_storable_text(note: str | None, accepted: bool) -> None:
    from pydantic import ValidationError

    from api.schemas.alerts import AlertActionCreate

    if accepted:
        assert AlertActionCreate.model_validate({"note": note}).note == note
    else:
        with pytest.raises(ValidationError):
            AlertActionCreate.model_validate({"note": note})
