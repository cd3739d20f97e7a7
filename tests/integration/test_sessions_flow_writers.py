"""store.sessions against the real database: idempotent upserts, no reopening, orphan stops."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from bus.sessions import Quality, QualityReason
from flows.sessions.logic import SessionRow, session_id_for
from store.samples import SAFE_BATCHES_AFTER_CONFLICT
from store.sessions import write_sessions_batch
from tests.support.sessions import T0, active, sample

pytestmark = pytest.mark.integration


def orphan_stop(tx: str = "1", meter_stop: int = 4_000) -> SessionRow:
    return SessionRow(
        session_id=session_id_for("CP1", tx),
        charge_point_id="CP1",
        connector_id=None,
        transaction_id=tx,
        id_tag=None,
        status="closed",
        started_at=None,
        stopped_at=T0 + timedelta(hours=1),
        meter_start_wh=None,
        meter_stop_wh=meter_stop,
        last_register_wh=None,
        energy_wh=None,
        energy_source=None,
        quality=Quality.MISSING,
        quality_reasons=(QualityReason.START_UNKNOWN,),
        stop_reason="Local",
        sample_count=0,
    )


def session_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT transaction_id, connector_id, id_tag, status, started_at, stopped_at,"
        " meter_start_wh, meter_stop_wh, energy_wh, quality, quality_reasons, sample_count"
        " FROM sessions ORDER BY transaction_id"
    ).fetchall()


def test_last_snapshot_wins_and_closed_is_never_reopened(db: psycopg.Connection[Any]) -> None:
    closed = active(
        status="closed",
        stopped_at=T0 + timedelta(hours=1),
        meter_stop_wh=3_000,
        energy_wh=2_000,
        stop_reason="Local",
        sample_count=2,
    )
    write_sessions_batch(
        db,
        [active(), active(energy_wh=500, sample_count=1), closed],
        [sample(1, "1500"), sample(2, "2500.5"), sample(1, "1500")],
    )
    first = session_rows(db)
    assert first == [
        ("1", 2, "TAG", "closed", T0, T0 + timedelta(hours=1), 1_000, 3_000, 2_000, "exact", [], 2)
    ]
    # A replay of the whole history (active snapshots included) changes nothing.
    write_sessions_batch(db, [active()], [sample(1, "1500")])
    write_sessions_batch(db, [active(energy_wh=500, sample_count=1), closed], [sample(2, "2500.5")])
    assert session_rows(db) == first
    assert db.execute("SELECT value FROM meter_samples ORDER BY measured_at").fetchall() == [
        (Decimal(1500),),
        (Decimal("2500.5"),),
    ]


def test_orphan_stop_takes_the_stored_start(db: psycopg.Connection[Any]) -> None:
    write_sessions_batch(db, [active(energy_wh=700, sample_count=3)], [])
    for _ in range(2):  # the second time is a replay: same result
        write_sessions_batch(db, [orphan_stop(meter_stop=4_000)], [])
    assert session_rows(db) == [
        (
            "1",
            2,
            "TAG",
            "closed",
            T0,
            T0 + timedelta(hours=1),
            1_000,
            4_000,
            3_000,
            "corrected",
            ["start_unknown"],
            3,
        )
    ]
    assert db.execute("SELECT energy_source FROM sessions").fetchall() == [("station_register",)]


def test_orphan_stop_without_any_stored_start_keeps_evidence(db: psycopg.Connection[Any]) -> None:
    write_sessions_batch(db, [orphan_stop("9", meter_stop=4_000)], [])
    stopped = T0 + timedelta(hours=1)
    assert session_rows(db) == [
        (
            "9",
            0,
            None,
            "closed",
            stopped,
            stopped,
            4_000,
            4_000,
            None,
            "missing",
            ["start_unknown"],
            0,
        )
    ]
    assert db.execute("SELECT energy_source FROM sessions").fetchall() == [(None,)]
    # Replaying the orphan stop does not mistake the placeholders for a start.
    before = session_rows(db)
    write_sessions_batch(db, [orphan_stop("9", meter_stop=4_000)], [])
    assert session_rows(db) == before
    # A later full replay that knows the start replaces the placeholders.
    full = active("9", status="closed", stopped_at=stopped, meter_stop_wh=4_000, energy_wh=3_000)
    write_sessions_batch(db, [full], [])
    assert session_rows(db) == [
        ("9", 2, "TAG", "closed", T0, stopped, 1_000, 4_000, 3_000, "exact", [], 0)
    ]


def test_empty_batch_is_a_no_op(db: psycopg.Connection[Any]) -> None:
    write_sessions_batch(db, [], [])
    assert session_rows(db) == []


def test_sink_reconnects_and_retries_after_losing_the_database_connection(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    from flows.sessions.sink import SessionsRows
    from flows.sinks.database import PostgresSink

    sink = PostgresSink(SessionsRows(), clean_db, name="test", overlap=False, max_backoff_s=0.2)
    part = sink.build_part("postgres", "writer-0", None)
    try:
        part.write_batch([[active(), sample(1, "1500")]])
        # Kill the sink's connection behind its back (a DB restart / failover).
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        assert killed
        part.write_batch([[active(energy_wh=900, sample_count=1), sample(2, "1900")]])
    finally:
        part.close()
    assert db.execute("SELECT energy_wh FROM sessions").fetchall() == [(900,)]
    assert db.execute("SELECT count(*) FROM meter_samples").fetchone() == (2,)


def test_sample_batches_insert_exactly_the_samples_not_stored_yet(
    db: psycopg.Connection[Any],
) -> None:
    def values() -> list[int]:
        return [
            int(v)
            for (v,) in db.execute(
                "SELECT value FROM meter_samples ORDER BY measured_at"
            ).fetchall()
        ]

    write_sessions_batch(db, [], [sample(1, "1"), sample(2, "2")])  # new: direct COPY
    # Overlaps the stored samples and repeats one within the batch: the direct COPY
    # conflicts, the batch goes through staging; the session upsert still commits.
    write_sessions_batch(db, [active()], [sample(2, "2"), sample(3, "3"), sample(3, "3")])
    assert values() == [1, 2, 3]
    assert len(session_rows(db)) == 1
    last = 4 + SAFE_BATCHES_AFTER_CONFLICT + 2
    for minute in range(4, last):  # the safe way for a while, then direct again
        write_sessions_batch(db, [], [sample(minute, str(minute))])
    write_sessions_batch(db, [], [sample(1, "1"), sample(last, str(last))])  # conflicts again
    assert values() == list(range(1, last + 1))


def test_overlapped_sink_has_everything_committed_at_each_snapshot(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    from flows.sessions.sink import SessionsRows
    from flows.sinks.database import PostgresSink

    sink = PostgresSink(SessionsRows(), clean_db, name="test", max_backoff_s=0.2, max_pending=2)
    [name] = sink.list_parts()
    part = sink.build_part("postgres", name, None)
    try:
        part.write_batch([[active(), sample(1, "1500")], [sample(2, "1600")]])
        part.write_batch([[active(energy_wh=900, sample_count=2), sample(3, "1900")]])
        part.snapshot()  # Bytewax commits the epoch only after this returns
        assert db.execute("SELECT energy_wh FROM sessions").fetchall() == [(900,)]
        assert db.execute("SELECT count(*) FROM meter_samples").fetchone() == (3,)
        # Survives losing its connection, like the synchronous sink.
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        part.write_batch([[sample(4, "2000")]])
        part.snapshot()
        assert db.execute("SELECT count(*) FROM meter_samples").fetchone() == (4,)
    finally:
        part.close()


def test_overlapped_sink_raises_a_failed_write_at_the_next_call(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    from flows.sessions.sink import SessionsRows
    from flows.sinks.database import PostgresSink

    part = PostgresSink(SessionsRows(), clean_db, name="test").build_part(
        "postgres", "writer-0", None
    )
    try:
        part.write_batch([[active(status="bogus")]])  # violates the status CHECK
        with pytest.raises(RuntimeError, match="could not write") as failure:
            part.snapshot()
        assert isinstance(failure.value.__cause__, psycopg.errors.CheckViolation)
        with pytest.raises(RuntimeError, match="could not write"):
            part.write_batch([[active()]])
    finally:
        part.close()  # already reported: does not raise again
    assert session_rows(db) == []
