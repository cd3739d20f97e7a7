"""runtime.logs: redaction, tracebacks without locals, ISO timestamps, the librdkafka
route and its rate limit (real log records through the real handler; a real
confluent-kafka producer aimed at a port nobody listens on)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog
import uvicorn.config

from bus.producer import Producer, PublishError, producer_config
from chargeflow.stack import free_port
from runtime.logs import (
    KAFKA_LOGGER_NAME,
    RepeatFilter,
    configure_logging,
    kafka_logger,
    redact_text,
    redact_value,
)

API_KEY = "cf_0123456789abcdef_" + "S3cretPart" * 4
DB_URL = "postgresql://app:DbPassw0rd@db.internal:5432/chargeflow"
STATION_PASSWORD = "station-pass-1234567"
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process-wide log configuration, restored afterwards."""
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        sys.excepthook,
        threading.excepthook,
        structlog.get_config(),
    )
    stream = io.StringIO()
    yield stream
    root.handlers[:], level, sys.excepthook, threading.excepthook, config = saved
    root.setLevel(level)
    structlog.configure(**config)


def fail_holding_secrets(api_key: str, database_url: str) -> None:
    password = STATION_PASSWORD  # a local the traceback must not show
    headers = {"Authorization": f"Bearer {api_key}"}
    raise RuntimeError(f"lookup failed for {len(password) + len(headers)} items")


def log_failure() -> None:
    try:
        fail_holding_secrets(API_KEY, DB_URL)
    except RuntimeError:
        structlog.get_logger("chargeflow.test").exception("request failed", path="/v1/x")
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")


def test_a_library_with_handlers_of_its_own_logs_through_the_configuration(
    captured: io.StringIO,
) -> None:
    # uvicorn's default log config gives its loggers their own handlers (which print
    # past redaction and formats) and stops them propagating; an API served earlier in
    # the same process leaves exactly that behind.
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    try:
        configure_logging("INFO", "json", stream=captured)
        try:
            fail_holding_secrets(API_KEY, DB_URL)
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        records = [json.loads(line) for line in captured.getvalue().splitlines()]
        assert [r["logger"] for r in records] == ["uvicorn.error"]
        assert "S3cretPart" not in captured.getvalue()
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_are_kept_without_locals_and_without_secrets(
    fmt: str, captured: io.StringIO
) -> None:
    configure_logging("INFO", fmt, stream=captured)
    log_failure()
    out = captured.getvalue()
    for secret in ("S3cretPart", "DbPassw0rd", STATION_PASSWORD):
        assert secret not in out
    assert "fail_holding_secrets" in out  # the frame is there, its locals are not
    if fmt == "console":
        assert out.count("Traceback (most recent call last)") == 2
        assert "RuntimeError: lookup failed for 21 items" in out
    else:
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["logger"] for r in records] == ["chargeflow.test", "uvicorn.error"]
        for record in records:
            (exc,) = record["exception"]
            assert exc["exc_type"] == "RuntimeError"
            assert [f["name"] for f in exc["frames"]][-1] == "fail_holding_secrets"
            assert all(f.get("locals") is None for f in exc["frames"])


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secrets_in_exception_messages_are_masked(fmt: str, captured: io.StringIO) -> None:
    configure_logging("INFO", fmt, stream=captured)
    try:
        raise ConnectionError(f"cannot connect to {DB_URL} with key {API_KEY}")
    except ConnectionError:
        logging.getLogger("psycopg.pool").exception("pool failed")
    out = captured.getvalue()
    assert "DbPassw0rd" not in out
    assert "S3cretPart" not in out
    assert "postgresql://app:***@db.internal:5432/chargeflow" in out
    if fmt == "json":
        (record,) = [json.loads(line) for line in out.splitlines()]
        assert record["exception"][0]["exc_value"].startswith(
            "cannot connect to postgresql://app:***@"
        )


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_every_line_has_a_full_utc_timestamp(fmt: str, captured: io.StringIO) -> None:
    configure_logging("INFO", fmt, stream=captured)
    structlog.get_logger("chargeflow.test").info("native")
    logging.getLogger("psycopg.pool").warning("foreign %s", "record")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    if fmt == "json":
        assert all(ISO_UTC.fullmatch(json.loads(line)["timestamp"]) for line in lines)
    else:
        assert all(ISO_UTC.match(line) for line in lines)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secret_keys_and_patterns_are_masked_in_native_and_foreign_records(
    fmt: str, captured: io.StringIO
) -> None:
    configure_logging("INFO", fmt, stream=captured)
    log = structlog.get_logger("chargeflow.test")
    log.info(
        "login",
        station_password=STATION_PASSWORD,
        api_key=API_KEY,
        headers={"Authorization": "Basic Q1AtMTpzdGF0aW9uLXBhc3MtMTIzNDU2Nw=="},
        database=DB_URL,
        stripe="sk_live_51HabcdefXYZ",
    )
    logging.getLogger("alembic").info("connecting to %s", DB_URL)
    logging.getLogger("aiomqtt").warning("broker mqtt://meter:MqttPw9@h:1883 refused")
    logging.getLogger("websockets.server").info("Authorization: Bearer %s", API_KEY)
    logging.getLogger("psycopg").error("conninfo host=db password=PgPw777 dbname=x")
    logging.getLogger("api").warning("rejected key %s", API_KEY)
    out = captured.getvalue()
    for secret in (
        STATION_PASSWORD,
        "S3cretPart",
        "Q1AtMTpz",
        "DbPassw0rd",
        "MqttPw9",
        "51HabcdefXYZ",
        "PgPw777",
    ):
        assert secret not in out, secret
    assert "db.internal:5432/chargeflow" in out  # the rest of a URL stays readable
    assert "cf_0123456789abcdef_***" in out  # the key id stays, for tracing a caller
    if fmt == "json":
        assert all(json.loads(line) for line in out.splitlines())


def test_redaction_keeps_ordinary_values() -> None:
    event = {
        "charge_point_id": "CP-1",
        "energy_wh": 1200,
        "has_password": True,
        "url": "ws://127.0.0.1:9000/ocpp",
        "reason": "wrong_password",
    }
    assert redact_value(event) == event
    assert redact_text("station CP-1 rejected: wrong_password") == (
        "station CP-1 rejected: wrong_password"
    )


def test_repeat_filter_lets_a_burst_through_then_reports_what_it_dropped() -> None:
    now = [0.0]
    limiter = RepeatFilter(burst=3, interval_s=10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(KAFKA_LOGGER_NAME, logging.ERROR, __file__, 1, msg, (), None)

    passed = [limiter.filter(record(f"Connect to 127.0.0.1:{9000 + n} failed")) for n in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limiter.filter(record("a different line"))  # counted on its own
    now[0] = 10.5
    summary = record("Connect to 127.0.0.1:9999 failed")
    assert limiter.filter(summary)
    assert summary.getMessage() == "Connect to 127.0.0.1:9999 failed (7 similar lines suppressed)"
    again = record("Connect to 127.0.0.1:9999 failed")
    assert limiter.filter(again)
    assert again.getMessage() == "Connect to 127.0.0.1:9999 failed"


def test_librdkafka_lines_go_through_the_logger_rate_limited(captured: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=captured)
    producer = Producer(producer_config(f"127.0.0.1:{free_port()}", delivery_timeout_ms=500))
    try:
        for _ in range(3):  # each attempt makes librdkafka retry the connection
            with pytest.raises(PublishError):
                producer.publish_sync("t", None, b"x", timeout=5)
    finally:
        producer.close(timeout=1)
    records = [json.loads(line) for line in captured.getvalue().splitlines()]
    kafka = [r for r in records if r["logger"] == KAFKA_LOGGER_NAME]
    assert kafka, records
    assert any("Connection refused" in r["event"] for r in kafka)
    limiter = next(f for f in kafka_logger().filters if isinstance(f, RepeatFilter))
    by_line: dict[str, int] = {}
    for r in kafka:
        key = re.sub(r"\d+", "#", r["event"])
        by_line[key] = by_line.get(key, 0) + 1
    assert max(by_line.values()) <= limiter.burst
