"""flows.sessions.dataflow wiring with Bytewax's testing source/sink (no Kafka, no DB)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import KafkaError as ConfluentKafkaError

from bus.envelope import encode_envelope
from bus.topics import Topics
from flows.sessions.dataflow import build_flow_with
from flows.sessions.logic import MeterSampleRow, SessionRow
from flows.settings import SessionsFlowSettings
from runtime.settings import SettingsError
from tests.support.sessions import T0, meter, register, start, stop


def kafka_like_input(items: Sequence[Any], batch_size: int = 3) -> TestingSource[Any]:
    """The same shape as the Kafka source: messages and consumer errors, in batches."""
    return TestingSource(list(items), batch_size)


def message(
    value: bytes | None, key: bytes | None, offset: int, partition: int = 0
) -> KafkaSourceMessage[bytes | None, bytes | None]:
    return KafkaSourceMessage(
        key=key, value=value, topic="ocpp.events", partition=partition, offset=offset
    )


def run_flow(items: Sequence[Any]) -> tuple[list[Any], list[KafkaSinkMessage[Any, Any]]]:
    rows: list[Any] = []
    dead: list[KafkaSinkMessage[Any, Any]] = []
    run_main(build_flow_with(kafka_like_input(items), TestingSink(rows), TestingSink(dead)))
    return rows, dead


def test_flow_turns_envelopes_into_rows_and_routes_garbage_to_dead_letters() -> None:
    envs = [
        start("CP1", 1, 1000),
        start("CP2", 2, 50),
        meter("CP1", 1, register(T0 + timedelta(minutes=5), 1400)),
        stop("CP2", 2, 80),
        stop("CP1", 1, 1500),
    ]
    items: list[Any] = [
        message(encode_envelope(e), e.charge_point_id.encode(), i) for i, e in enumerate(envs)
    ]
    items.insert(2, message(b"\x00\xffgarbage", b"CP1", 100))
    items.insert(3, message(b'{"message_id": 5}', b"CP2", 101))
    items.append(message(None, b"CP3", 102))
    bad_start = msgspec.structs.replace(start("CP3", 3, 0), response={})
    items.append(message(encode_envelope(bad_start), b"CP3", 103))
    items.append(
        KafkaError(
            ConfluentKafkaError(ConfluentKafkaError._MSG_TIMED_OUT),
            message(b"lost", b"CP4", 104),
        )
    )

    rows, dead = run_flow(items)

    closed = {
        r.charge_point_id: r for r in rows if isinstance(r, SessionRow) and r.status == "closed"
    }
    assert {cp: r.energy_wh for cp, r in closed.items()} == {"CP1": 500, "CP2": 30}
    assert [r.value for r in rows if isinstance(r, MeterSampleRow)] == [1400]
    # Per charge point, snapshots arrive in order (same key, same worker).
    cp1 = [r.status for r in rows if isinstance(r, SessionRow) and r.charge_point_id == "CP1"]
    assert cp1 == ["active", "active", "closed"]

    by_offset = {int(dict(d.headers)["deadletter.source.offset"]): d for d in dead}
    assert sorted(by_offset) == [100, 101, 102, 103, 104]
    headers = {o: dict(d.headers) for o, d in by_offset.items()}
    assert by_offset[100].value == b"\x00\xffgarbage"
    assert by_offset[100].key == b"CP1"
    assert headers[100]["deadletter.reason"].startswith(b"envelope is not valid JSON")
    assert headers[100]["deadletter.stage"] == b"decode"
    assert headers[100]["deadletter.source.topic"] == b"ocpp.events"
    assert headers[100]["deadletter.source.partition"] == b"0"
    assert headers[101]["deadletter.reason"].startswith(b"envelope does not match schema")
    assert headers[102]["deadletter.reason"] == b"message has no value"
    assert headers[103]["deadletter.stage"] == b"validate"
    assert b"transactionId" in headers[103]["deadletter.reason"]
    assert headers[104]["deadletter.stage"] == b"consume"
    assert by_offset[104].value == b"lost"


def test_duplicated_deliveries_do_not_change_the_result() -> None:
    envs = [
        start("CP1", 1, 0),
        meter("CP1", 1, register(T0 + timedelta(minutes=1), 250)),
        stop("CP1", 1, 300),
    ]
    once = [message(encode_envelope(e), b"CP1", i) for i, e in enumerate(envs)]
    twice = once + once  # at-least-once redelivery of everything
    rows_once, _ = run_flow(once)
    rows_twice, _ = run_flow(twice)
    assert rows_once == rows_twice


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    def config_from_env() -> Any:
        return SessionsFlowSettings.load().flow_config()

    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "k1:9092, k2:9092")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.delenv("CHARGEFLOW_TOPIC_PREFIX", raising=False)
    monkeypatch.delenv("CHARGEFLOW_FLOW_TAIL", raising=False)
    config = config_from_env()
    assert config.brokers == ["k1:9092", "k2:9092"]
    assert config.database_url == "postgresql://x@h/db"
    assert config.topics == Topics()
    assert config.tail is True
    assert config.batch_size == 1000
    monkeypatch.setenv("CHARGEFLOW_TOPIC_PREFIX", "dev.")
    monkeypatch.setenv("CHARGEFLOW_FLOW_TAIL", "false")
    config = config_from_env()
    assert config.topics.ocpp_events == "dev.ocpp.events"
    assert config.tail is False
    monkeypatch.setenv("CHARGEFLOW_FLOW_TAIL", "maybe")
    with pytest.raises(SettingsError, match="CHARGEFLOW_FLOW_TAIL"):
        config_from_env()
    monkeypatch.delenv("CHARGEFLOW_FLOW_TAIL")
    monkeypatch.delenv("CHARGEFLOW_DATABASE_URL")
    with pytest.raises(SettingsError, match="CHARGEFLOW_DATABASE_URL"):
        config_from_env()
