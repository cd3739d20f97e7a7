"""The sessions flow end to end: real broker, real Bytewax Kafka input, real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import msgspec
import psycopg
import pytest
from bytewax.testing import run_main

from bus.admin import read_topic
from bus.envelope import Envelope, encode_envelope
from bus.measurands import ENERGY_REGISTER
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from flows.sessions.logic import session_id_for
from tests.support.flows import publish
from tests.support.paths import ROOT
from tests.support.sessions import T0, envelope, iso, meter, register, start, stop

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
GARBAGE = b"\x00\x01 not an envelope \xff"
SCHEMA_VIOLATION = b'{"message_id": "m-bad", "charge_point_id": 5, "kind": "ocpp.call"}'


def scenario() -> list[tuple[bytes, bytes]]:
    """(key, value) pairs as the gateway would publish them, plus some junk."""
    power = envelope(
        "CP-A",
        "MeterValues",
        {
            "connectorId": 2,
            "transactionId": 102,
            "meterValue": [
                {
                    "timestamp": iso(T0 + 15 * M),
                    "sampledValue": [
                        {"value": "0.9", "unit": "kWh", "measurand": ENERGY_REGISTER},
                        {"value": "7400", "unit": "W", "measurand": "Power.Active.Import"},
                    ],
                }
            ],
        },
        at=T0 + 15 * M,
    )
    b_meter = meter("CP-B", 201, register(T0 + 10 * M, 400))
    clock = meter("CP-C", None, register(T0 + 30 * M, 7_650), connector=0)
    bad_start = msgspec.structs.replace(start("CP-C", 302, 0), response={"idTagInfo": {}})
    events: list[Envelope | bytes] = [
        envelope("CP-A", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
        start("CP-A", 101, 10_000, connector=1, at=T0),
        start("CP-A", 102, 500, connector=2, at=T0 + 5 * M),
        meter("CP-A", 101, register(T0 + 10 * M, 11_000)),
        GARBAGE,
        power,
        meter("CP-A", 101, register(T0 + 20 * M, 12_500)),
        stop("CP-A", 102, 1_700, at=T0 + 25 * M, reason="EVDisconnected"),
        stop("CP-A", 101, 13_250, at=T0 + 30 * M),
        start("CP-B", 201, 0, at=T0),
        b_meter,
        b_meter,  # redelivered: same message id
        SCHEMA_VIOLATION,
        stop("CP-B", 201, 800, at=T0 + 40 * M),
        stop("CP-B", 201, 800, at=T0 + 40 * M),  # published twice (new message id)
        envelope("CP-C", "Heartbeat", {}),
        start("CP-C", 301, 7_000, at=T0),
        meter("CP-C", 301, register(T0 + 20 * M, 7_600)),
        clock,
        bad_start,
        stop("CP-D", 999, 4_000, at=T0 + 50 * M, reason="PowerLoss"),
    ]
    out: list[tuple[bytes, bytes]] = []
    for e in events:
        if isinstance(e, bytes):
            key = b"CP-A" if e is GARBAGE else b"CP-B"
            out.append((key, e))
        else:
            out.append((e.charge_point_id.encode(), encode_envelope(e)))
    return out


EXPECTED_SESSIONS = {
    # tx: (cp, connector, status, started, stopped, start, stop, last_reg, energy, quality,
    #      reasons, stop_reason, samples)
    "101": (
        "CP-A",
        1,
        "closed",
        T0,
        T0 + 30 * M,
        10_000,
        13_250,
        12_500,
        3_250,
        "exact",
        [],
        "Local",
        2,
    ),
    "102": (
        "CP-A",
        2,
        "closed",
        T0 + 5 * M,
        T0 + 25 * M,
        500,
        1_700,
        900,
        1_200,
        "exact",
        [],
        "EVDisconnected",
        2,
    ),
    "201": ("CP-B", 1, "closed", T0, T0 + 40 * M, 0, 800, 400, 800, "exact", [], "Local", 1),
    "301": ("CP-C", 1, "active", T0, None, 7_000, None, 7_600, 600, "exact", [], None, 1),
    "999": (
        "CP-D",
        0,
        "closed",
        T0 + 50 * M,
        T0 + 50 * M,
        4_000,
        4_000,
        None,
        None,
        "missing",
        ["start_unknown"],
        "PowerLoss",
        0,
    ),
}

EXPECTED_SAMPLES = {
    ("CP-A", 1, "101", ENERGY_REGISTER, "Wh", T0 + 10 * M, Decimal(11_000)),
    ("CP-A", 1, "101", ENERGY_REGISTER, "Wh", T0 + 20 * M, Decimal(12_500)),
    ("CP-A", 2, "102", ENERGY_REGISTER, "kWh", T0 + 15 * M, Decimal("0.9")),
    ("CP-A", 2, "102", "Power.Active.Import", "W", T0 + 15 * M, Decimal(7_400)),
    ("CP-B", 1, "201", ENERGY_REGISTER, "Wh", T0 + 10 * M, Decimal(400)),
    ("CP-C", 1, "301", ENERGY_REGISTER, "Wh", T0 + 20 * M, Decimal(7_600)),
    ("CP-C", 0, None, ENERGY_REGISTER, "Wh", T0 + 30 * M, Decimal(7_650)),
}


def all_sessions(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()


def all_samples(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT * FROM meter_samples ORDER BY charge_point_id, connector_id, measurand,"
        " phase, location, context, measured_at"
    ).fetchall()


def assert_expected_tables(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "SELECT transaction_id, session_id, charge_point_id, connector_id, status, started_at,"
        " stopped_at, meter_start_wh, meter_stop_wh, last_register_wh, energy_wh, quality,"
        " quality_reasons, stop_reason, sample_count, energy_source FROM sessions"
    ).fetchall()
    got = {r[0]: r[2:15] for r in rows}
    assert got == EXPECTED_SESSIONS
    for r in rows:
        assert r[1] == session_id_for(r[2], r[0])
        # (the orphan stop 999 has no figure, so no source)
        assert r[15] == (None if r[0] == "999" else "station_register")
    samples = db.execute(
        "SELECT charge_point_id, connector_id, transaction_id, measurand, unit, measured_at, value"
        " FROM meter_samples"
    ).fetchall()
    assert len(samples) == len(EXPECTED_SAMPLES)
    assert set(samples) == EXPECTED_SAMPLES


def dead_letters(bootstrap: str, topics: Topics) -> list[tuple[bytes | None, dict[str, bytes]]]:
    letters: list[tuple[bytes | None, dict[str, bytes]]] = []
    for m in read_topic(bootstrap, topics.deadletter):
        raw = cast(list[tuple[str, bytes]], m.headers() or [])
        headers = dict(raw)
        letters.append((m.value(), headers))
    return letters


def test_kafka_flow_computes_sessions_and_replays_identically(
    broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any], clean_db: str
) -> None:
    publish(broker.bootstrap, topics.ocpp_events, scenario())
    config = SessionsFlowConfig(
        brokers=[broker.bootstrap],
        database_url=clean_db,
        topics=topics,
        tail=False,
    )

    run_main(build_flow(config))  # returns at the end of every partition

    assert_expected_tables(db)
    letters = dead_letters(broker.bootstrap, topics)
    by_value = {v: h for v, h in letters}
    assert len(letters) == 3
    assert by_value[GARBAGE]["deadletter.reason"].startswith(b"envelope is not valid JSON")
    assert by_value[GARBAGE]["deadletter.stage"] == b"decode"
    assert by_value[GARBAGE]["deadletter.source.topic"] == topics.ocpp_events.encode()
    assert by_value[SCHEMA_VIOLATION]["deadletter.reason"].startswith(
        b"envelope does not match schema"
    )
    [validate] = [h for v, h in letters if v not in (GARBAGE, SCHEMA_VIOLATION)]
    assert validate["deadletter.stage"] == b"validate"
    assert b"transactionId" in validate["deadletter.reason"]
    for _, headers in letters:
        assert int(headers["deadletter.source.partition"]) in (0, 1)
        assert int(headers["deadletter.source.offset"]) >= 0

    before = (all_sessions(db), all_samples(db))
    run_main(build_flow(config))  # fresh state, whole topic again
    assert (all_sessions(db), all_samples(db)) == before
    assert len(dead_letters(broker.bootstrap, topics)) == 6  # at-least-once: re-sent


def test_bytewax_run_from_env_exits_at_end_of_topic(
    broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any], clean_db: str
) -> None:
    publish(broker.bootstrap, topics.ocpp_events, scenario())
    prefix = topics.ocpp_events[: -len(Topics().ocpp_events)]
    env = {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": prefix,
        "CHARGEFLOW_FLOW_TAIL": "false",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.sessions.dataflow:from_env()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_expected_tables(db)
    assert len(dead_letters(broker.bootstrap, topics)) == 3


def run_bytewax(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.sessions.dataflow:from_env()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_recovery_resumes_state_and_offsets_with_two_workers(
    broker: EmbeddedBroker,
    topics: Topics,
    db: psycopg.Connection[Any],
    clean_db: str,
    tmp_path: Any,
) -> None:
    publish(broker.bootstrap, topics.ocpp_events, scenario())
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(recovery), "2"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    env = {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": topics.ocpp_events[: -len(Topics().ocpp_events)],
        "CHARGEFLOW_FLOW_TAIL": "false",
    }
    args = ("-w", "2", "-r", str(recovery), "-s", "1", "-b", "0")
    run_bytewax(env, *args)
    assert_expected_tables(db)

    # The open session of CP-C ends after the restart: the resumed state still knows
    # its start, so the stop is exact (no start_unknown) and nothing is counted twice.
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        [
            (b"CP-C", encode_envelope(meter("CP-C", 301, register(T0 + 40 * M, 7_900)))),
            (b"CP-C", encode_envelope(stop("CP-C", 301, 8_000, at=T0 + 45 * M))),
        ],
    )
    run_bytewax(env, *args)
    row = db.execute(
        "SELECT status, energy_wh, quality, quality_reasons, sample_count, last_register_wh"
        " FROM sessions WHERE transaction_id = '301'"
    ).fetchone()
    assert row == ("closed", 1_000, "exact", [], 2, 7_900)
    assert db.execute("SELECT count(*) FROM meter_samples").fetchone() == (
        len(EXPECTED_SAMPLES) + 1,
    )
    assert len(dead_letters(broker.bootstrap, topics)) == 3  # the junk was not re-read
