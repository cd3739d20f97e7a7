"""``chargeflow webhooks`` on the real broker and database, delivering to a real local
HTTP receiver: signed, once per alert version, retried, dead after N failures with a
dead letter, and a worker restart (clean or killed) loses and repeats nothing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest

from bench.common import fresh_database
from bus.admin import ensure_topics, read_topic
from bus.alerts import (
    AlertKind,
    FaultAlert,
    Severity,
    decode_fault_alert,
    encode_fault_alert,
)
from bus.deadletter import REASON, SOURCE, STAGE
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port
from notify.signing import verify_signature
from store.alerts import version_key
from tests.support.database import set_allow_connections
from tests.support.flows import publish
from tests.support.polling import poll_until
from tests.support.webhooks import (
    Receiver,
    fault_alert,
    receiver,
    start_worker,
    worker_env,
)

pytestmark = pytest.mark.integration

SECRETS = {
    "ops": "ops-secret-0123456789abcdef",
    "flaky": "flaky-secret-0123456789abcdef",
    "down": "down-secret-0123456789abcdef",
    "pager": "pager-secret-0123456789abcdef",
}
# A path token (chat webhooks carry one): it must not reach the log either.
DOWN_PATH = "/down/T0K3N-in-the-url-9f8e7d"


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    yield from receiver()


def _alert_message(alert: FaultAlert) -> tuple[bytes, bytes]:
    return alert.station_id.encode(), encode_fault_alert(alert)


def _rows(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT endpoint, alert_id, version_key, status, attempts, last_error"
            " FROM webhook_deliveries ORDER BY delivery_id"
        ).fetchall()


def _stop(worker: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    worker.send_signal(sig)
    return worker.wait(timeout=30)


def _assert_no_secret_in(log: Path) -> None:
    text = log.read_text()
    assert text, "the worker logged nothing"
    for secret in SECRETS.values():
        assert secret not in text
    assert "T0K3N" not in text


def _endpoints(hooks: Receiver) -> list[dict[str, Any]]:
    """ops: everything; flaky (fails twice) and down (always 500): overheating only;
    pager: critical only."""
    hooks.fail("/flaky", 2)
    hooks.always(DOWN_PATH, 500)
    heat = ["connector_overheating"]
    return [
        {"name": "ops", "url": hooks.url("/ops"), "secret": SECRETS["ops"]},
        {"name": "flaky", "url": hooks.url("/flaky"), "secret": SECRETS["flaky"], "kinds": heat},
        {"name": "down", "url": hooks.url(DOWN_PATH), "secret": SECRETS["down"], "kinds": heat},
        {
            "name": "pager",
            "url": hooks.url("/pager"),
            "secret": SECRETS["pager"],
            "min_severity": "critical",
        },
    ]


def _check_ops(hooks: Receiver, expected: list[FaultAlert]) -> None:
    """Every version exactly once, signed with ops's secret (not another's)."""
    ops = hooks.requests("/ops")
    assert len(ops) == len(expected), ops
    assert len(set(hooks.delivered_ids("/ops"))) == len(expected)
    got = []
    for request in ops:
        signature = request.headers["Chargeflow-Signature"]
        verify_signature(SECRETS["ops"], signature, request.body, tolerance=60)
        with pytest.raises(ValueError, match="no v1 signature matches"):
            verify_signature(SECRETS["flaky"], signature, request.body)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Chargeflow-Event"] == "fault.alert"
        got.append(decode_fault_alert(request.body))
    assert sorted(got, key=version_key) == sorted(expected, key=version_key)


def _check_flaky(hooks: Receiver) -> None:
    """Two 503s, then each version delivered, the same delivery id on every try."""
    flaky = hooks.requests("/flaky")
    assert [r.status for r in flaky].count(503) == 2
    assert len(flaky) == 4
    assert len(hooks.delivered_ids("/flaky")) == 2  # opened, updated (the kind filter)
    for delivery in set(hooks.delivered_ids("/flaky")):
        tries = [r for r in flaky if r.headers["Chargeflow-Delivery"] == delivery]
        attempts = [int(r.headers["Chargeflow-Attempt"]) for r in tries]
        assert attempts == list(range(1, len(tries) + 1)), attempts
        assert tries[-1].status == 200


def _check_dead(
    bootstrap: str, topics: Topics, rows: list[tuple[Any, ...]], gave_up_on: list[FaultAlert]
) -> None:
    """down: max_attempts (3) tries per version, then dead with the reason and a dead
    letter; the unreadable message dead-lettered by the intake."""
    dead = [r for r in rows if r[0] == "down"]
    assert [(r[3], r[4]) for r in dead] == [("dead", 3)] * len(gave_up_on)
    assert all(r[5] == "HTTP 500 Internal Server Error" for r in dead), dead
    assert {(r[0], r[3]) for r in rows if r[0] != "down"} == {
        ("ops", "delivered"),
        ("flaky", "delivered"),
        ("pager", "delivered"),
    }
    by_stage: dict[str, list[Any]] = {}
    for msg in read_topic(bootstrap, topics.deadletter):
        headers = dict(cast(list[tuple[str, bytes]], msg.headers() or []))
        by_stage.setdefault(headers[STAGE].decode(), []).append((msg, headers))
    assert [m.value() for m, _ in by_stage["webhooks.intake"]] == [b"{not json"]
    letters = by_stage["webhooks.delivery"]
    assert sorted(decode_fault_alert(m.value()).last_seen for m, _ in letters) == sorted(
        a.last_seen for a in gave_up_on
    )
    for _msg, headers in letters:
        assert headers[SOURCE] == b"webhook:down"
        assert b"gave up after 3 attempts: HTTP 500" in headers[REASON]


def test_alerts_arrive_signed_once_per_version_retried_and_dead_lettered(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, hooks: Receiver, tmp_path: Path
) -> None:
    endpoints = _endpoints(hooks)
    opened = fault_alert()
    updated = fault_alert(minutes=5)
    ground = fault_alert(station="CP2", kind=AlertKind.GROUND_FAULT, severity=Severity.CRITICAL)
    security = b'{"kind": "security.alert", "message_id": "m1", "payload": {}}'
    publish(
        broker.bootstrap,
        topics.alerts,
        [
            _alert_message(opened),
            (b"CP9", security),  # the gateway's kind on the same topic: not ours
            (b"CP9", b"{not json"),  # unreadable: dead-lettered, the rest goes on
            _alert_message(updated),
            _alert_message(opened),  # the same version again (a replay): no second delivery
            _alert_message(ground),
        ],
    )
    log = tmp_path / "webhooks.log"
    env = worker_env(
        bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        endpoints=endpoints,
        max_attempts="3",
    )
    worker = start_worker(env, log)
    try:
        rows = poll_until(
            lambda: _rows(clean_db),
            lambda rows: len(rows) == 8 and all(r[3] != "pending" for r in rows),
            60,
            "every delivery delivered or dead",
        )
    finally:
        assert _stop(worker) == 0
    _check_ops(hooks, [opened, updated, ground])
    _check_flaky(hooks)
    assert [decode_fault_alert(r.body) for r in hooks.requests("/pager")] == [ground]
    assert len(hooks.requests(DOWN_PATH)) == 6
    _check_dead(broker.bootstrap, topics, rows, [opened, updated])
    _assert_no_secret_in(log)


def test_a_restart_mid_way_loses_nothing_and_delivers_nothing_twice(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, hooks: Receiver, tmp_path: Path
) -> None:
    """A clean stop (SIGTERM) mid-way repeats nothing; a kill (SIGKILL) during a request
    repeats exactly that request, with its delivery id, once the claim's lease is over;
    two workers at once (SKIP LOCKED) then finish the rest. Every version arrives."""
    hooks.slow("/ops", 0.05)
    endpoints = [{"name": "ops", "url": hooks.url("/ops"), "secret": SECRETS["ops"]}]
    versions = [fault_alert(station=f"CP{n % 5}", minutes=n) for n in range(40)]
    publish(broker.bootstrap, topics.alerts, [_alert_message(a) for a in versions[:30]])
    env = worker_env(
        bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        endpoints=endpoints,
        log_format="json",
        concurrency="1",
        request_timeout_s="1",  # the lease: 2 x 1 + 5 s
    )
    log = tmp_path / "webhooks.log"

    def delivered() -> list[str]:
        return hooks.delivered_ids("/ops")

    first = start_worker(env, log)
    poll_until(delivered, lambda ids: len(ids) >= 8, 60, "the first deliveries")
    assert _stop(first) == 0
    after_clean_stop = delivered()
    assert len(after_clean_stop) < 30, "stopped too late to test a restart"
    assert len(set(after_clean_stop)) == len(after_clean_stop)  # a clean stop repeats nothing
    publish(broker.bootstrap, topics.alerts, [_alert_message(a) for a in versions[30:]])
    killed = start_worker(env, log)
    poll_until(delivered, lambda ids: len(ids) >= len(after_clean_stop) + 4, 60, "more")
    hooks.slow("/ops", 3.0)  # longer than the request timeout: caught mid-request
    poll_until(lambda: hooks.in_flight("/ops", slower_than=1), bool, 10, "a slow request")
    killed.kill()
    killed.wait(timeout=30)
    hooks.slow("/ops", 0.05)
    pair = [start_worker(env, log), start_worker(env, log)]
    try:
        poll_until(delivered, lambda ids: len(set(ids)) == 40, 90, "every version delivered")
        rows = poll_until(
            lambda: _rows(clean_db),
            lambda rows: all(r[3] == "delivered" for r in rows),
            30,
            "every row delivered",
        )
    finally:
        assert [_stop(worker) for worker in pair] == [0, 0]
    assert len(rows) == 40  # the alerts topic read again queued nothing twice
    ids = delivered()
    repeated = {i for i in ids if ids.count(i) > 1}
    assert len(ids) == 41, "only the request in flight at the kill is repeated"
    assert len(repeated) == 1
    assert sorted(r[4] for r in rows) == [1] * 39 + [2]  # its row: a second attempt
    _assert_no_secret_in(log)


def test_a_bad_endpoint_stops_the_worker_with_one_line_and_no_secret(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    secret = "too-short"
    env = worker_env(
        bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        endpoints=[{"name": "ops", "url": "http://127.0.0.1:9/h", "secret": secret}],
    )
    result = subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", "webhooks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: CHARGEFLOW_WEBHOOKS_ENDPOINTS[0].secret: "), lines
    assert secret not in result.stderr + result.stdout


def test_the_worker_waits_for_a_missing_topic_and_stops_cleanly(
    broker: EmbeddedBroker, clean_db: str, hooks: Receiver, tmp_path: Path
) -> None:
    topics = Topics.with_prefix(f"late{uuid.uuid4().hex[:8]}.")
    endpoints = [{"name": "ops", "url": hooks.url("/ops"), "secret": SECRETS["ops"]}]
    log = tmp_path / "webhooks.log"
    env = worker_env(
        bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        endpoints=endpoints,
        http_port="0",
    )
    worker = start_worker(env, log)
    try:
        text = poll_until(
            lambda: log.read_text(), lambda text: "not available" in text, 60, "the warning"
        )
        found = re.search(r"health and metrics .*url=(http://127\.0\.0\.1:\d+)", text)
        assert found is not None, text
        base = found.group(1)
        ensure_topics(broker.bootstrap, topics.all(), partitions=2)
        alert = fault_alert(station="CP-LATE")
        publish(broker.bootstrap, topics.alerts, [_alert_message(alert)])
        poll_until(lambda: hooks.delivered_ids("/ops"), bool, 60, "the alert delivered")
        metrics = poll_until(
            lambda: httpx.get(f"{base}/metrics", timeout=5).text,
            lambda text: 'chargeflow_webhooks_attempts_total{outcome="delivered"} 1.0' in text,
            10,
            "the delivered attempt counted",
        )
        assert 'chargeflow_webhooks_alert_messages_total{result="queued"} 1.0' in metrics
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        assert _stop(worker) == 0
    assert [decode_fault_alert(r.body) for r in hooks.requests("/ops")] == [alert]
    _assert_no_secret_in(log)


def test_refused_connections_and_timeouts_count_as_failures(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, hooks: Receiver, tmp_path: Path
) -> None:
    hooks.slow("/slow", 1.5)
    closed = f"http://127.0.0.1:{free_port()}/nobody-listens"
    endpoints = [
        {"name": "refused", "url": closed, "secret": SECRETS["ops"]},
        {"name": "slow", "url": hooks.url("/slow"), "secret": SECRETS["flaky"]},
    ]
    publish(broker.bootstrap, topics.alerts, [_alert_message(fault_alert())])
    log = tmp_path / "webhooks.log"
    env = worker_env(
        bootstrap=broker.bootstrap,
        database_url=clean_db,
        topics=topics,
        endpoints=endpoints,
        max_attempts="2",
        request_timeout_s="0.5",
    )
    worker = start_worker(env, log)
    try:
        rows = poll_until(
            lambda: _rows(clean_db),
            lambda rows: len(rows) == 2 and all(r[3] == "dead" for r in rows),
            60,
            "both deliveries dead",
        )
    finally:
        assert _stop(worker) == 0
    errors = {r[0]: r[5] for r in rows}
    assert errors["slow"] == "no answer within 0.5 s"
    assert errors["refused"].startswith("ConnectError"), errors
    assert "nobody-listens" not in errors["refused"]
    poll_until(lambda: hooks.requests("/slow"), lambda r: len(r) == 2, 10, "both slow tries")
    assert "nobody-listens" not in log.read_text()
    _assert_no_secret_in(log)


def test_a_database_outage_delays_deliveries_and_loses_none(
    broker: EmbeddedBroker,
    pg_server: DatabaseServer,
    topics: Topics,
    hooks: Receiver,
    tmp_path: Path,
) -> None:
    endpoints = [{"name": "ops", "url": hooks.url("/ops"), "secret": SECRETS["ops"]}]
    versions = [fault_alert(minutes=n) for n in range(3)]
    log = tmp_path / "webhooks.log"
    with fresh_database(pg_server, "chargeflow_test_webhooks") as url:
        database = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        env = worker_env(
            bootstrap=broker.bootstrap, database_url=url, topics=topics, endpoints=endpoints
        )
        worker = start_worker(env, log)
        try:
            publish(broker.bootstrap, topics.alerts, [_alert_message(versions[0])])
            poll_until(lambda: hooks.delivered_ids("/ops"), bool, 60, "the first delivery")
            set_allow_connections(pg_server.admin_url, database, False)
            try:
                publish(broker.bootstrap, topics.alerts, [_alert_message(v) for v in versions[1:]])
                poll_until(
                    lambda: log.read_text().count("failed, retrying"),
                    lambda n: n >= 3,
                    30,
                    "retries logged while the database is away",
                )
                assert worker.poll() is None
                assert len(hooks.requests("/ops")) == 1
            finally:
                set_allow_connections(pg_server.admin_url, database, True)
            poll_until(
                lambda: hooks.delivered_ids("/ops"), lambda ids: len(ids) >= 3, 60, "the rest"
            )
            rows = poll_until(
                lambda: _rows(url),
                lambda rows: len(rows) == 3 and all(r[3] == "delivered" for r in rows),
                30,
                "every row delivered",
            )
        finally:
            assert _stop(worker) == 0
    ids = hooks.delivered_ids("/ops")
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert sorted(decode_fault_alert(r.body).last_seen for r in hooks.requests("/ops")) == [
        v.last_seen for v in versions
    ]
    assert all(r[4] == 1 for r in rows)
    _assert_no_secret_in(log)
