"""The sessions flow rides out a real PostgreSQL outage: its database refuses
connections and its sessions are terminated while events keep arriving; the sink
backs off (bounded, logged) and resumes, and the tables end up exactly as an
undisturbed run's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.common import (
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
from tests.support.database import set_allow_connections
from tests.support.flows import reference_tables
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

SPEC = StreamSpec(stations=10, meter_events=900, meter_values_per_session=11, values_per_event=3)
MAX_BACKOFF_S = 1.0
RETRY = re.compile(r"database unavailable \(.*\); (\d+) rows waiting, retry (\d+) in ([\d.]+)s")


def retries(log: Path) -> list[tuple[int, int, float]]:
    return [(int(a), int(b), float(c)) for a, b, c in RETRY.findall(log.read_text())]


def test_sink_backs_off_during_a_database_outage_and_resumes_without_loss(
    broker: EmbeddedBroker, topics: Topics, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    msgs = messages(SPEC)
    third = len(msgs) // 3
    before, during, after = msgs[:third], msgs[third : 2 * third], msgs[2 * third :]
    log = tmp_path / "flow.log"

    with fresh_database(pg_server, "chargeflow_test_outage") as url:
        database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        assert isinstance(database, str)
        env = flow_env(
            broker.bootstrap,
            topics,
            url,
            tail=True,
            CHARGEFLOW_FLOW_DB_MAX_BACKOFF_S=str(MAX_BACKOFF_S),
        )
        recovery = ensure_recovery_dir(tmp_path / "recovery", 1)
        flow = start_flow(env, "-r", str(recovery), "-s", "1", "-b", "0", log=log)
        try:
            produce_all(broker.bootstrap, topics.ocpp_events, before)
            poll_until(
                lambda: row_counts(url)[1],
                lambda n: n == sample_count(before),
                30,
                "the first third in the database",
            )

            set_allow_connections(pg_server.admin_url, database, False)
            try:
                produce_all(broker.bootstrap, topics.ocpp_events, during)
                # The sink retries with growing, capped delays and says so.
                seen: list[Any] = poll_until(
                    lambda: retries(log), lambda r: len(r) >= 6, 30, "six logged retries"
                )
                assert flow.poll() is None  # still running, waiting for the database
                delays = [d for _, _, d in seen]
                assert max(delays) <= MAX_BACKOFF_S
                assert delays[-1] > delays[0]  # it backs off
                assert all(rows > 0 for rows, _, _ in seen)
            finally:
                set_allow_connections(pg_server.admin_url, database, True)

            produce_all(broker.bootstrap, topics.ocpp_events, after)
            expected = reference_tables(pg_server, broker.bootstrap, topics)
            assert len(expected[1]) == sample_count(msgs)
            poll_until(
                lambda: table_rows(url),
                lambda got: got == expected,
                30,
                "the flow to catch up after the outage",
            )
            assert "database available again after" in log.read_text()
        finally:
            rc = stop_flow(flow)
        assert rc == 0, log.read_text()[-3000:]
