"""The faults flow on the real broker and database: ground faults and frozen registers in
``ocpp.events`` become one alert per ongoing fault in ``alerts``/``alert_events`` and on
the ``alerts`` topic, resolved when the station reports healthy; a replay from offset 0
into a fresh database gives the same alert ids and versions; a SIGKILL mid-stream and a
restart from recovery lose no version and add none."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest

from bench.common import KeyValue, flow_env, fresh_database, produce_all, start_flow, stop_flow
from bus.admin import read_topic
from bus.alerts import decode_fault_alert
from bus.envelope import Envelope, Kind, encode_envelope, new_message_id
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port
from flows.recovery import ensure_recovery_dir
from tests.support.alerts import outbox_size
from tests.support.faults import faulty_station
from tests.support.flows import events_in, faults_reference, stored_versions
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

FAULTS_FLOW = "flows.faults.dataflow:from_env()"
T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
Version = tuple[str, str]  # (alert_id, version_key)


def fleet(stations: int, minutes: int = 40) -> list[Envelope]:
    """Every station's fault story (:func:`faulty_station`), each starting a minute after
    the one before, merged in telemetry order as the gateway would publish them."""
    envelopes = [
        e
        for n in range(stations)
        for e in faulty_station(f"CP-F{n:03d}", T0 + timedelta(minutes=n), minutes)
    ]
    return sorted(envelopes, key=lambda e: (e.received_at, e.charge_point_id))


def kv(envelopes: Sequence[Envelope]) -> list[KeyValue]:
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in envelopes]


def security_alert(cp: str) -> KeyValue:
    envelope = Envelope(
        message_id=new_message_id(),
        charge_point_id=cp,
        received_at=T0,
        measured_at=T0,
        kind=Kind.SECURITY_ALERT,
        payload={
            "alert": "repeated_failed_authentication",
            "scope": "charge_point",
            "known_station": True,
            "failures": 5,
            "window_s": 300,
            "gateway_id": "gw-test",
        },
    )
    return cp.encode(), encode_envelope(envelope)


def alerts_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT station_id, connector_id, kind, status, first_seen, detector FROM alerts"
            " ORDER BY station_id, connector_id, kind, first_seen"
        ).fetchall()


def published(bootstrap: str, topics: Topics) -> list[Version]:
    """The (alert_id, version) of every fault.alert message on the alerts topic (header
    and payload must agree), in topic order, duplicates kept."""
    out: list[Version] = []
    for msg in read_topic(bootstrap, topics.alerts):
        value = msg.value()
        if value is None or b'"fault.alert"' not in value:
            continue
        alert = decode_fault_alert(value)
        headers = dict(cast("list[tuple[str, bytes]]", msg.headers() or []))
        assert headers["alert_id"].decode() == alert.alert_id
        assert msg.key() == alert.station_id.encode()
        out.append((alert.alert_id, headers["version"].decode()))
    return out


def deadletters(bootstrap: str, topics: Topics) -> int:
    return sum(1 for _ in read_topic(bootstrap, topics.deadletter))


def _run_until_every_fault_resolved(
    broker: EmbeddedBroker, topics: Topics, url: str, log: Path, fed: int, stations: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Runs the flow process until every station's two faults are resolved, every stored
    version is on the topic and its metrics counted both inputs; (alerts, versions)."""
    port = free_port()
    env = flow_env(
        broker.bootstrap,
        topics,
        url,
        tail=True,
        CHARGEFLOW_FLOW_BATCH_SIZE="20",
        CHARGEFLOW_FLOW_METRICS_PORT=str(port),
    )
    flow = start_flow(env, log=log, flow=FAULTS_FLOW)
    try:
        rows = poll_until(
            lambda: alerts_rows(url),
            lambda r: len(r) == 2 * stations + 1 and all(a[3] == "resolved" for a in r),
            60,
            "every station's two faults and the failed logins resolved",
        )
        versions = stored_versions(url)
        poll_until(
            lambda: (sorted(published(broker.bootstrap, topics)), outbox_size(url)),
            lambda p: p == (sorted(v[:2] for v in versions), 0),
            30,
            "every stored version on the alerts topic, the outbox empty",
        )
        # Measured like every flow: both input topics (its own output included).
        counted = poll_until(
            lambda: events_in(port),
            lambda c: c.get(topics.alerts) == 1 + len(versions),
            30,
            "the metrics to count every message of both topics",
        )
        assert counted[topics.ocpp_events] == fed
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        rc = stop_flow(flow)
    assert rc == 0, log.read_text()[-3000:]
    return rows, versions


def _expected_alerts(cp: str, start: datetime) -> list[tuple[Any, ...]]:
    """A :func:`faulty_station`'s two alerts, resolved, as :func:`alerts_rows` has them."""
    frozen_at, ground_at = start + timedelta(minutes=13), start + timedelta(minutes=9, seconds=30)
    return [
        (cp, 1, "meter_fault", "resolved", frozen_at, "rule:frozen_register"),
        (cp, 2, "ground_fault", "resolved", ground_at, "rule:error_code"),
    ]


def test_faults_become_one_alert_each_stored_published_and_resolved_and_replay_equal(
    broker: EmbeddedBroker, topics: Topics, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    stations = 4
    fed = [*kv(fleet(stations)), (b"CP-X", b"junk")]
    produce_all(broker.bootstrap, topics.ocpp_events, fed)
    produce_all(broker.bootstrap, topics.alerts, [security_alert("CP-F000")])
    with fresh_database(pg_server, "chargeflow_test_faults") as url:
        rows, versions = _run_until_every_fault_resolved(
            broker, topics, url, tmp_path / "flow.log", len(fed), stations
        )
        for n in range(stations):
            cp = f"CP-F{n:03d}"
            logins = [
                (cp, 0, "security", "resolved", T0, "rule:gateway_repeated_failed_authentication")
            ]
            assert [r for r in rows if r[0] == cp] == (logins if n == 0 else []) + (
                _expected_alerts(cp, T0 + timedelta(minutes=n))
            )
        # One open version and one resolved version of each, plus the meter fault's one
        # update 15 telemetry minutes into it: never a repeat for the same ongoing fault.
        assert [v[2] for v in versions].count("resolved") == 2 * stations + 1
        assert len(versions) == 5 * stations + 2
        # The junk is a dead letter; the gateway's security alert (an alert of its own)
        # and the flow's own fault.alert messages on its input topic are not.
        assert deadletters(broker.bootstrap, topics) == 1

        # The topic (now holding the flow's own output too) replayed from offset 0 into a
        # fresh database: the same alert ids and versions.
        assert faults_reference(pg_server, broker.bootstrap, topics, stored_versions) == versions


def recovery_commits(recovery: Path) -> int:
    """The last epoch committed to the recovery store."""
    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT coalesce(max(commit_epoch), 0) FROM commits").fetchone()
    return int(row[0])


def resume_epochs(recovery: Path) -> list[int]:
    """The epoch every execution so far resumed from."""
    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT resume_epoch FROM exs ORDER BY ex_num").fetchall()
    return [int(r[0]) for r in rows]


def _kill_mid_stream(
    broker: EmbeddedBroker,
    topics: Topics,
    env: dict[str, str],
    flow_args: Sequence[str],
    log: Path,
    url: str,
    parts: tuple[Sequence[KeyValue], Sequence[KeyValue]],
) -> int:
    """Runs the flow on ``parts[0]`` until snapshots cover it, then on ``parts[1]`` until
    some of its versions are stored, and SIGKILLs it; the versions stored before."""
    recovery = Path(flow_args[1])
    produce_all(broker.bootstrap, topics.ocpp_events, parts[0])
    first = start_flow(env, *flow_args, log=log, flow=FAULTS_FLOW)
    try:
        before = poll_until(
            lambda: (len(stored_versions(url)), recovery_commits(recovery)),
            lambda p: p[0] > 0 and p[1] >= 1,
            60,
            "versions of the first third, snapshotted",
        )
        poll_until(  # two snapshots later the first third is read and stored
            lambda: recovery_commits(recovery),
            lambda c: c >= before[1] + 2,
            30,
            "later snapshots",
        )
        done = len(stored_versions(url))
        produce_all(broker.bootstrap, topics.ocpp_events, parts[1])
        poll_until(
            lambda: len(stored_versions(url)),
            lambda n: n > done,
            30,
            "versions of the second third",
            interval=0.01,
        )
    finally:
        first.kill()
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    return done


def test_sigkill_mid_stream_and_restart_loses_and_duplicates_no_alert_version(
    broker: EmbeddedBroker, topics: Topics, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    msgs = kv(fleet(24))
    third = len(msgs) // 3
    recovery = ensure_recovery_dir(tmp_path / "recovery", 1)
    args = ("-r", str(recovery), "-s", "1", "-b", "0")
    log = tmp_path / "flow.log"
    with fresh_database(pg_server, "chargeflow_test_faults_kill") as url:
        env = flow_env(broker.bootstrap, topics, url, tail=True, CHARGEFLOW_FLOW_BATCH_SIZE="10")
        parts = (msgs[:third], msgs[third : 2 * third])
        done = _kill_mid_stream(broker, topics, env, args, log, url, parts)
        assert done < len(stored_versions(url)) < 5 * 24  # killed mid-stream
        committed = recovery_commits(recovery)

        produce_all(broker.bootstrap, topics.ocpp_events, msgs[2 * third :])
        second = start_flow(env, *args, log=log, flow=FAULTS_FLOW)
        try:
            expected = faults_reference(pg_server, broker.bootstrap, topics, stored_versions)
            assert len(expected) == 5 * 24
            poll_until(
                lambda: (stored_versions(url), set(published(broker.bootstrap, topics))),
                lambda got: got == (expected, {v[:2] for v in expected}),
                60,
                "the restarted flow's versions to match an uninterrupted run, all published",
            )
            poll_until(lambda: outbox_size(url), lambda n: n == 0, 30, "the outbox empty")
        finally:
            rc = stop_flow(second)
        assert rc == 0, log.read_text()[-3000:]
        # The restart resumed from the last snapshot (state and offsets), not from scratch.
        assert resume_epochs(recovery) == [1, committed + 1]
        # No version lost or added in the database; on the topic at least once each
        # (a version published but not yet retired from the outbox at the kill is sent
        # again: consumers de-duplicate by (alert_id, version)).
        assert stored_versions(url) == expected
        on_topic = published(broker.bootstrap, topics)
        assert set(on_topic) == {v[:2] for v in expected}
        assert len(on_topic) >= len(expected)
