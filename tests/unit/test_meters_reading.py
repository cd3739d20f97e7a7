"""Smart meter readings: validation, normalisation, topics, URLs (pure, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.meters.config import BridgeConfig, MqttEndpoint
from ingest.meters.reading import (
    INVALID_JSON,
    METER_MISMATCH,
    SCHEMA_VIOLATION,
    ReadingError,
    encode_reading,
    meter_id_from_topic,
    parse_reading,
    validate_pattern,
)

GOOD = {
    "meter_id": "MTR-1",
    "time": "2026-11-22T10:15:00.250+01:00",
    "energy_wh": 18234512,
    "power_w": 7350.2,
    "voltage_v": 230.4,
    "current_a": 10.63,
    "temperature_c": 31.5,
}


def raw(**changes: object) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def reason_of(data: bytes, topic_meter_id: str | None = None) -> tuple[str, str]:
    with pytest.raises(ReadingError) as info:
        parse_reading(data, topic_meter_id)
    return info.value.reason, info.value.detail


def test_valid_reading_is_normalised() -> None:
    reading = parse_reading(raw(), "MTR-1")
    assert reading.meter_id == "MTR-1"
    assert reading.measured_at == datetime(2026, 11, 22, 9, 15, 0, 250000, tzinfo=UTC)
    assert reading.energy_wh == Decimal(18234512)
    payload = reading.payload(connector_id=2, is_billing_meter=True)
    assert payload == {
        "meter_id": "MTR-1",
        "connector_id": 2,
        "energy_wh": "18234512",
        "power_w": 7350.2,
        "voltage_v": 230.4,
        "current_a": 10.63,
        "temperature_c": 31.5,
        "is_billing_meter": True,
    }


def test_decimal_string_energy_keeps_its_digits() -> None:
    reading = parse_reading(raw(energy_wh="18234512.125"))
    assert reading.energy_wh == Decimal("18234512.125")
    assert reading.payload(connector_id=1, is_billing_meter=False)["energy_wh"] == "18234512.125"


def test_meter_id_from_topic_when_payload_has_none() -> None:
    assert parse_reading(raw(meter_id=...), "MTR-9").meter_id == "MTR-9"
    assert reason_of(raw(meter_id=...), None)[0] == SCHEMA_VIOLATION


def test_optional_temperature_and_integer_numbers() -> None:
    reading = parse_reading(raw(temperature_c=..., power_w=0, current_a=0))
    assert reading.temperature_c is None
    assert reading.power_w == 0.0


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"{not json", INVALID_JSON, "malformed"),
        (b"", INVALID_JSON, "truncated"),
        (b"\xff\xfe", INVALID_JSON, ""),
        (b"[1, 2]", SCHEMA_VIOLATION, "Expected `object`"),
        (raw(energy_wh=1234.5), SCHEMA_VIOLATION, "energy_wh"),
        (raw(energy_wh=-1), SCHEMA_VIOLATION, ">= 0"),
        (raw(energy_wh="1e3"), SCHEMA_VIOLATION, "decimal string"),
        (raw(energy_wh="-5"), SCHEMA_VIOLATION, "decimal string"),
        (raw(energy_wh="12.5 kWh"), SCHEMA_VIOLATION, "decimal string"),
        (raw(energy_wh=True), SCHEMA_VIOLATION, "energy_wh"),
        (raw(energy_wh=10**19), SCHEMA_VIOLATION, "out of range"),
        (raw(time="2026-11-22T10:15:00"), SCHEMA_VIOLATION, "UTC offset"),
        (raw(time="22/11/2026 10:15"), SCHEMA_VIOLATION, "time"),
        (raw(time=1763802900), SCHEMA_VIOLATION, "time"),
        (raw(power_w="7350"), SCHEMA_VIOLATION, "power_w"),
        (raw(power_w=...), SCHEMA_VIOLATION, "power_w"),
        (raw(voltage_v=-1.0), SCHEMA_VIOLATION, "voltage_v"),
        (raw(current_a=False), SCHEMA_VIOLATION, "current_a"),
        (raw(temperature_c="hot"), SCHEMA_VIOLATION, "temperature_c"),
        (raw(meter_id="bad/id"), SCHEMA_VIOLATION, "malformed"),
        (raw(meter_id=""), SCHEMA_VIOLATION, "malformed"),
        (raw(frequency_hz=50.0), SCHEMA_VIOLATION, "unknown field `frequency_hz`"),
        (
            b'{"meter_id": "MTR-1", "time": "2026-11-22T10:15:00Z", "energy_wh": 1, '
            b'"power_w": 1e999, "voltage_v": 230, "current_a": 0}',
            SCHEMA_VIOLATION,
            "power_w",
        ),
    ],
)
def test_invalid_readings_name_the_reason(data: bytes, reason: str, detail: str) -> None:
    got_reason, got_detail = reason_of(data)
    assert got_reason == reason
    assert detail in got_detail


def test_a_meter_cannot_speak_for_another() -> None:
    reason, detail = reason_of(raw(meter_id="MTR-2"), "MTR-1")
    assert reason == METER_MISMATCH
    assert "MTR-2" in detail


def test_message_id_is_stable_per_meter_and_time() -> None:
    a = parse_reading(raw())
    same_instant = parse_reading(raw(time="2026-11-22T09:15:00.250Z", energy_wh=1))
    later = parse_reading(raw(time="2026-11-22T10:15:01.250+01:00"))
    other = parse_reading(raw(meter_id="MTR-2"))
    assert a.message_id == same_instant.message_id
    assert len({a.message_id, later.message_id, other.message_id}) == 3


@given(
    energy=st.one_of(
        st.integers(min_value=0, max_value=10**17),
        st.decimals(min_value=0, max_value=10**12, places=3, allow_nan=False),
    ),
    offset_min=st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_encode_parse_round_trip(energy: int | Decimal, offset_min: int) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    when = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=tz)
    data = encode_reading("MTR-7", when, energy, power_w=1.0, voltage_v=230.0, current_a=0.5)
    reading = parse_reading(data, "MTR-7")
    assert reading.energy_wh == Decimal(energy)
    assert reading.measured_at == when
    assert reading.measured_at.tzinfo == UTC


def test_topic_pattern_and_meter_id() -> None:
    assert meter_id_from_topic("meters/+/reading", "meters/MTR-1/reading") == "MTR-1"
    assert meter_id_from_topic("t1.meters/+/reading", "t1.meters/M/reading") == "M"
    assert meter_id_from_topic("meters/+/reading", "meters//reading") is None
    assert meter_id_from_topic("meters/#", "meters/MTR-1/reading") is None
    assert validate_pattern("a/+/b/#") == "a/+/b/#"
    for bad in ("", "a/#/b", "a/b+/c", "a/#x"):
        with pytest.raises(ValueError, match="topic filter"):
            validate_pattern(bad)
    with pytest.raises(ValueError, match="topic filter"):
        BridgeConfig(topic_pattern="meters/#/reading")
    assert BridgeConfig(share_group="g").subscription == "$share/g/meters/+/reading"


def test_mqtt_urls() -> None:
    plain = MqttEndpoint.from_url("mqtt://127.0.0.1:1884")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1884, False, None)
    secure = MqttEndpoint.from_url("mqtts://bridge:p%40ss@broker.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "bridge",
        "p@ss",
    )
    assert "p@ss" not in secure.url
    assert "p@ss" not in repr(secure)
    with pytest.raises(ValueError, match="not an MQTT URL"):
        MqttEndpoint.from_url("http://x:1")
