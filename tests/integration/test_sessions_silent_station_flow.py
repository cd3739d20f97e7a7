"""A station that goes silent mid-session (powered off, cable cut): the running sessions
flow closes its session by the wall clock, writes it and publishes it on
``sessions.closed`` -- without any further message from the station."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from bench.common import flow_env, start_flow, stop_flow
from bus.admin import read_topic
from bus.envelope import encode_envelope
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.recovery import ensure_recovery_dir
from tests.support.flows import publish
from tests.support.polling import poll_until
from tests.support.sessions import T0, meter, register, start, stop

pytestmark = pytest.mark.integration


def session(db: psycopg.Connection[Any], tx: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT status, closed_by, energy_wh, quality_reasons FROM sessions"
        " WHERE transaction_id = %s",
        (tx,),
    ).fetchone()


MINUTE = timedelta(minutes=1)


def _publish_a_silent_and_a_normal_session(broker: EmbeddedBroker, topics: Topics) -> None:
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        [
            (b"CP-SILENT", encode_envelope(start("CP-SILENT", 11, 5_000, at=T0))),
            (
                b"CP-SILENT",
                encode_envelope(meter("CP-SILENT", 11, register(T0 + 5 * MINUTE, 6_200))),
            ),
            # Another station ends its session normally: not touched by the timeout.
            (b"CP-OK", encode_envelope(start("CP-OK", 21, 0, at=T0))),
            (b"CP-OK", encode_envelope(stop("CP-OK", 21, 900, at=T0 + 10 * MINUTE))),
        ],
    )


def _check_both_closed_and_published(
    broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    # First the session is stored as running (the flow saw the start and a sample) ...
    poll_until(
        lambda: session(db, "11"), lambda r: r is not None, 60, "the silent station's session"
    )
    # ... then, with no message at all from the station, it closes after ~2 s.
    row = poll_until(
        lambda: session(db, "11"),
        lambda r: r is not None and r[0] == "closed",
        60,
        "the silent station's session closed",
    )
    assert row == ("closed", "timeout", 1_200, ["stop_missing"])
    assert session(db, "21") == ("closed", "stop", 900, [])

    def closed_ids() -> list[str]:
        return sorted(
            msgspec.json.decode(m.value() or b"")["transaction_id"]
            for m in read_topic(broker.bootstrap, topics.sessions_closed)
        )

    assert poll_until(
        closed_ids, lambda ids: ids == ["11", "21"], 30, "both sessions on sessions.closed"
    ) == ["11", "21"]


def test_a_silent_stations_session_closes_by_the_wall_clock(
    broker: EmbeddedBroker,
    topics: Topics,
    db: psycopg.Connection[Any],
    clean_db: str,
    tmp_path: Path,
) -> None:
    _publish_a_silent_and_a_normal_session(broker, topics)
    recovery = ensure_recovery_dir(tmp_path / "recovery", 1)
    env = flow_env(
        broker.bootstrap, topics, clean_db, tail=True, CHARGEFLOW_SESSION_IDLE_TIMEOUT_S="2"
    )
    flow = start_flow(env, "-r", str(recovery), "-s", "1", "-b", "0", log=tmp_path / "flow.log")
    try:
        _check_both_closed_and_published(broker, topics, db)
        assert flow.poll() is None  # still running: the close came from the timer

        # The station comes back and sends its late StopTransaction: the row is amended.
        publish(
            broker.bootstrap,
            topics.ocpp_events,
            [
                (b"CP-SILENT", encode_envelope(stop("CP-SILENT", 11, 6_400, at=T0 + 7 * MINUTE))),
            ],
        )
        amended = poll_until(
            lambda: session(db, "11"),
            lambda r: r is not None and r[1] == "stop",
            60,
            "the late stop amending the session",
        )
        assert amended == ("closed", "stop", 1_400, ["stop_late"])
    finally:
        assert stop_flow(flow) == 0, (tmp_path / "flow.log").read_text()[-3000:]
