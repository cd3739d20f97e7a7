"""The sessions flow survives a crash: SIGKILL mid-stream, restart from Bytewax recovery,
and the tables equal an uninterrupted run over the same events (no loss, no double count)."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.common import (
    KeyValue,
    StreamSpec,
    flow_env,
    fresh_database,
    messages,
    produce_all,
    row_counts,
    sample_count,
    start_flow,
    stop_flow,
    table_rows,
)
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker
from flows.recovery import ensure_recovery_dir
from tests.support.flows import reference_tables
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

# 12 stations, ~110 sessions, 1,500 MeterValues with 3 sampled values each.
SPEC = StreamSpec(stations=12, meter_events=1_500, meter_values_per_session=13, values_per_event=3)


def recovery_progress(recovery: Path) -> tuple[int, list[int]]:
    """(the last committed epoch, the resume epoch of every execution so far)."""
    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True) as conn:
        committed = conn.execute("SELECT coalesce(max(commit_epoch), 0) FROM commits").fetchone()
        resumes = conn.execute("SELECT resume_epoch FROM exs ORDER BY ex_num").fetchall()
    return int(committed[0]), [int(r[0]) for r in resumes]


def _flow_args(recovery: Path) -> tuple[str, ...]:
    return ("-r", str(recovery), "-s", "1", "-b", "0")


def _kill_after_a_snapshot_and_some_later_rows(
    broker: EmbeddedBroker,
    topics: Topics,
    env: dict[str, str],
    recovery: Path,
    log: Path,
    url: str,
    parts: tuple[Sequence[KeyValue], Sequence[KeyValue]],
) -> None:
    """Runs the flow on ``parts[0]`` until a snapshot covers it, then on ``parts[1]`` until
    some of its rows are written, and kills it with SIGKILL."""
    first_part, second_part = parts
    produce_all(broker.bootstrap, topics.ocpp_events, first_part)
    first = start_flow(env, *_flow_args(recovery), log=log)
    try:
        # The first third is stored and covered by a committed recovery snapshot ...
        done = sample_count(first_part)
        poll_until(
            lambda: (row_counts(url)[1], recovery_progress(recovery)[0]),
            lambda p: p[0] == done and p[1] >= 1,
            30,
            "the first third snapshotted",
        )
        # ... then SIGKILL as soon as the second third starts to arrive in the database
        # (rows written after the last snapshot: the restart writes them again).
        produce_all(broker.bootstrap, topics.ocpp_events, second_part)
        poll_until(
            lambda: row_counts(url)[1],
            lambda n: n > done,
            30,
            "rows of the second third",
            interval=0.01,
        )
    finally:
        first.kill()
        first.wait(10)
    assert first.returncode == -signal.SIGKILL


def test_sigkill_mid_stream_and_restart_equals_an_uninterrupted_run(
    broker: EmbeddedBroker, topics: Topics, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    msgs = messages(SPEC)
    third = len(msgs) // 3
    first_part, second_part, rest = msgs[:third], msgs[third : 2 * third], msgs[2 * third :]
    total_samples = sample_count(msgs)
    recovery = ensure_recovery_dir(tmp_path / "recovery", 1)
    args = _flow_args(recovery)
    log = tmp_path / "flow.log"

    with fresh_database(pg_server, "chargeflow_test_recovery") as url:
        # Small input batches: many epochs and transactions, so the kill lands mid-way.
        env = flow_env(broker.bootstrap, topics, url, tail=True, CHARGEFLOW_FLOW_BATCH_SIZE="10")
        _kill_after_a_snapshot_and_some_later_rows(
            broker, topics, env, recovery, log, url, (first_part, second_part)
        )
        committed, resumes = recovery_progress(recovery)
        assert resumes == [1]
        at_kill = row_counts(url)
        assert 0 < at_kill[1] < total_samples  # some, not all, of the events are stored

        produce_all(broker.bootstrap, topics.ocpp_events, rest)
        second = start_flow(env, *args, log=log)
        try:
            expected = reference_tables(pg_server, broker.bootstrap, topics)
            assert len(expected[1]) == total_samples
            assert len(expected[0]) == sum(1 for _, v in msgs if b'"StartTransaction"' in v)
            poll_until(
                lambda: table_rows(url),
                lambda got: got == expected,
                30,
                "the restarted flow to match the uninterrupted run",
            )
        finally:
            rc = stop_flow(second)
        assert rc == 0, log.read_text()[-3000:]
        # The restart resumed from the snapshot (state and offsets), not from scratch.
        assert recovery_progress(recovery)[1] == [1, committed + 1]
        # Nothing was written twice and nothing changed after it caught up.
        assert table_rows(url) == expected
