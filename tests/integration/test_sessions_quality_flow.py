"""Session energy quality end to end: a mixed OCPP 1.6 / 2.0.1 stream plus smart-meter
readings through the real broker, the real Bytewax Kafka input and PostgreSQL;
``sessions.closed`` published exactly once per session, also across a replay and
across a crash between the database commit and the publish."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from bus.admin import read_topic
from bus.envelope import Envelope, encode_envelope
from bus.sessions import decode_session_closed
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.recovery import ensure_recovery_dir
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from flows.sessions.logic import session_id_for
from tests.support.flows import publish
from tests.support.sessions import T0, meter, reading, register, start, stop, sv, tx_event

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
BAD_READING = b'{"not": "an envelope"}'


def readings() -> list[Envelope]:
    return [
        # CP-M connector 1: the billing meter.
        reading("CP-M", T0 - M, 70_010),
        reading("CP-M", T0 + 10 * M, 74_000),
        reading("CP-M", T0 + 21 * M, 77_050),
        # CP-201 EVSE 1: a cross-check meter that reads 100 Wh more than the station.
        reading("CP-201", T0 - M, 10_000, meter_id="MTR-X", billing=False),
        reading("CP-201", T0 + 31 * M, 12_600, meter_id="MTR-X", billing=False),
    ]


def ocpp_events() -> list[Envelope]:
    dup = meter("CP-16", 101, register(T0 + 10 * M, 2_500))
    return [
        start("CP-16", 101, 1_000),
        dup,
        dup,  # redelivered
        meter("CP-16", None, register(T0 + 12 * M, 9_000_000), connector=0),  # main meter
        stop("CP-16", 101, 4_000, at=T0 + 20 * M),
        start("CP-16", 102, 50_000, connector=2),
        meter("CP-16", 102, register(T0 + 5 * M, 52_000), connector=2),
        meter("CP-16", 102, register(T0 + 10 * M, 300), connector=2),  # reboot
        stop("CP-16", 102, 1_500, at=T0 + 15 * M),
        tx_event(
            "CP-201", "Started", "a", 0, T0, sv("10.5", context="Transaction.Begin", unit="kWh")
        ),
        tx_event("CP-201", "Updated", "a", 1, T0 + 10 * M, sv("1.2345", unit="kWh", multiplier=1)),
        tx_event(
            "CP-201",
            "Ended",
            "a",
            2,
            T0 + 30 * M,
            sv("1.3", context="Transaction.End", unit="kWh", multiplier=1),
        ),
        start("CP-M", 301, 1_000),
        stop("CP-M", 301, 8_000, at=T0 + 20 * M),
        start("CP-T", 401, 100),
        meter("CP-T", 401, register(T0 + 5 * M, 600)),
        start("CP-T", 402, 700, at=T0 + 30 * M),  # 401's stop never came
        stop("CP-T", 402, 900, at=T0 + 40 * M),
    ]


# tx: (energy, source, quality, reasons, closed_by, station energy, meter energy)
EXPECTED = {
    "101": (3_000, "station_register", "exact", [], "stop", 3_000, None),
    "102": (3_500, "station_register", "corrected", ["register_reset"], "stop", 3_500, None),
    "a": (2_500, "station_register", "corrected", ["smart_meter_mismatch"], "stop", 2_500, 2_600),
    "301": (7_040, "smart_meter", "exact", [], "stop", 7_000, 7_040),
    "401": (500, "station_register", "corrected", ["stop_missing"], "next_start", 500, None),
    "402": (200, "station_register", "exact", [], "stop", 200, None),
}


def as_messages(envs: list[Envelope]) -> list[tuple[bytes, bytes]]:
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in envs]


def sessions(db: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(
        "SELECT transaction_id, energy_wh, energy_source, quality, quality_reasons, closed_by,"
        " station_energy_wh, smart_meter_energy_wh FROM sessions WHERE status = 'closed'"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def tables(db: psycopg.Connection[Any]) -> tuple[list[tuple[Any, ...]], ...]:
    return tuple(
        db.execute(q).fetchall()
        for q in (
            "SELECT * FROM sessions ORDER BY session_id",
            "SELECT * FROM meter_samples ORDER BY charge_point_id, connector_id, measurand, phase,"
            " location, context, measured_at",
            "SELECT session_id, payload FROM sessions_outbox ORDER BY session_id",
        )
    )


def closed_messages(bootstrap: str, topics: Topics) -> list[tuple[bytes | None, bytes | None]]:
    return [(m.key(), m.value()) for m in read_topic(bootstrap, topics.sessions_closed)]


def test_mixed_stream_with_smart_meters_publishes_each_closed_session_once(
    broker: EmbeddedBroker,
    topics: Topics,
    db: psycopg.Connection[Any],
    clean_db: str,
    tmp_path: Path,
) -> None:
    recovery = RecoveryConfig(str(ensure_recovery_dir(tmp_path / "recovery", 1)))
    config = SessionsFlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )

    # The readings are in before the stations' messages (the usual live order).
    publish(
        broker.bootstrap, topics.meter_readings, [*as_messages(readings()), (b"CP-M", BAD_READING)]
    )
    run_main(build_flow(config), recovery_config=recovery)
    publish(broker.bootstrap, topics.ocpp_events, as_messages(ocpp_events()))
    run_main(build_flow(config), recovery_config=recovery)

    assert sessions(db) == {
        tx: (e, s, q, r, c, st, mt) for tx, (e, s, q, r, c, st, mt) in EXPECTED.items()
    }
    # The main meter's value is stored as a connector-0 sample, not billed.
    assert db.execute(
        "SELECT connector_id, transaction_id FROM meter_samples WHERE value = 9000000"
    ).fetchall() == [(0, None)]
    assert db.execute(
        "SELECT unit_multiplier FROM meter_samples WHERE charge_point_id ="
        " 'CP-201' AND context = 'Sample.Periodic'"
    ).fetchall() == [(1,)]

    published = closed_messages(broker.bootstrap, topics)
    decoded = [decode_session_closed(v or b"") for _, v in published]
    assert Counter(m.transaction_id for m in decoded) == Counter(list(EXPECTED))
    for (key, _), m in zip(published, decoded, strict=True):
        assert m.message_id == session_id_for(m.charge_point_id, m.transaction_id).hex
        assert key == m.charge_point_id.encode()
        assert (m.energy_wh, m.energy_source, m.quality) == EXPECTED[m.transaction_id][:3]
    assert db.execute(
        "SELECT count(*) FROM sessions_outbox WHERE published_at IS NULL"
    ).fetchone() == (0,)

    # Replay both topics from scratch: same tables, nothing published again.
    before = tables(db)
    run_main(build_flow(config))
    assert tables(db) == before
    assert len(closed_messages(broker.bootstrap, topics)) == len(EXPECTED)


def test_crash_between_commit_and_publish_resends_on_restart(
    broker: EmbeddedBroker,
    topics: Topics,
    db: psycopg.Connection[Any],
    clean_db: str,
    tmp_path: Path,
) -> None:
    recovery = RecoveryConfig(str(ensure_recovery_dir(tmp_path / "recovery", 1)))
    config = SessionsFlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        as_messages([start("CP-16", 1, 1_000), stop("CP-16", 1, 2_000, at=T0 + 30 * M)]),
    )

    # The commit happened, the publish did not (the state a crash right after the
    # commit leaves behind): the outbox row waits.
    run_main(
        build_flow(SessionsFlowConfig(**{**config.__dict__, "publish_closed": False})),
        recovery_config=recovery,
    )
    assert db.execute("SELECT status, energy_wh FROM sessions").fetchall() == [("closed", 1_000)]
    assert db.execute(
        "SELECT count(*) FROM sessions_outbox WHERE published_at IS NULL"
    ).fetchone() == (1,)
    assert closed_messages(broker.bootstrap, topics) == []

    # The restart (no new input) publishes it ...
    run_main(build_flow(config), recovery_config=recovery)
    [(key, value)] = closed_messages(broker.bootstrap, topics)
    assert key == b"CP-16"
    assert decode_session_closed(value or b"").energy_wh == 1_000
    # ... once: further restarts and a full replay add nothing.
    run_main(build_flow(config), recovery_config=recovery)
    run_main(build_flow(config))
    assert len(closed_messages(broker.bootstrap, topics)) == 1
    assert db.execute(
        "SELECT count(*) FROM sessions_outbox WHERE published_at IS NULL"
    ).fetchone() == (0,)
