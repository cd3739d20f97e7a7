"""Each flow process's health and metrics endpoint, with the real flow as a child
process (``python -m flows.run``), the embedded broker and PostgreSQL: the counters
match what was fed (events in per topic, a dead letter from a bad message), the
sink's histograms and the lag are there, and readiness follows the database."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bench.common import StreamSpec, flow_env, messages, produce_all, start_flow, stop_flow
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port
from flows.recovery import ensure_recovery_dir
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

SPEC = StreamSpec(
    stations=4,
    meter_events=120,
    meter_values_per_session=10,
    values_per_event=1,
    status_notifications=True,
)
FLOWS = {
    "sessions": ("flows.sessions.dataflow:from_env()", "chargeflow-sessions"),
    "load": ("flows.load.dataflow:from_env()", "chargeflow-load"),
    "status": ("flows.status.dataflow:from_env()", "chargeflow-status"),
}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by (name, sorted labels); {} while not serving."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return {}
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def readiness(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    except httpx.TransportError:
        return None


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _check_the_counts_of_what_was_fed(port: int, name: str, topics: Topics, fed: int) -> None:
    flow = {"flow": FLOWS[name][1]}
    samples = poll_until(
        lambda: scrape(port),
        lambda s: (
            value(s, "chargeflow_flow_events_in_total", **flow, topic=topics.ocpp_events) == fed
            and value(
                s,
                "chargeflow_flow_dead_letters_total",
                **flow,
                stage="decode",
                source_topic=topics.ocpp_events,
            )
            == 1
            and (
                value(
                    s,
                    "chargeflow_flow_epoch_seconds_count",
                    **flow,
                    topic=topics.ocpp_events,
                    partition="0",
                )
                or 0
            )
            >= 1
        ),
        60,
        f"the {name} flow to count {fed} messages, 1 dead letter and an epoch",
    )
    # Exactly what was fed: nothing more arrives, nothing on the other topic.
    assert value(
        samples, "chargeflow_flow_events_in_total", **flow, topic=topics.meter_readings
    ) in (None, 0.0)
    assert (
        value(
            samples,
            "chargeflow_flow_dead_letters_total",
            **flow,
            stage="validate",
            source_topic=topics.ocpp_events,
        )
        is None
    )


def _check_the_sink_histograms(port: int, flow_id: str) -> Samples:
    """Returns the scrape that saw a sink write."""
    sink = {"sink": flow_id}
    batches = poll_until(
        lambda: scrape(port),
        lambda s: (value(s, "chargeflow_flow_sink_batch_size_count", **sink) or 0) > 0,
        30,
        "a sink write",
    )
    assert value(batches, "chargeflow_flow_sink_write_seconds_count", **sink) == value(
        batches, "chargeflow_flow_sink_batch_size_count", **sink
    )
    assert (value(batches, "chargeflow_flow_sink_batch_size_sum", **sink) or 0) >= 1
    assert (value(batches, "chargeflow_flow_sink_write_seconds_sum", **sink) or 0) > 0
    return batches


def _check_caught_up_and_ready(port: int, flow_id: str, topics: Topics, batches: Samples) -> None:
    # Caught up: every input partition reports a lag, and it is 0.
    lags = poll_until(
        lambda: [
            value(
                scrape(port),
                "chargeflow_flow_input_lag",
                flow=flow_id,
                topic=topics.ocpp_events,
                partition=p,
            )
            for p in ("0", "1")
        ],
        lambda got: got == [0.0, 0.0],
        30,
        "the lag of both partitions to read 0",
    )
    assert lags == [0.0, 0.0]
    assert value(batches, "process_cpu_seconds_total") is not None
    ready = readiness(port)
    assert ready is not None
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"input": {"ok": True}, "sink": {"ok": True}}


@pytest.mark.parametrize("name", list(FLOWS))
def test_flow_metrics_count_what_was_fed(
    name: str,
    broker: EmbeddedBroker,
    topics: Topics,
    clean_db: str,
    tmp_path: Path,
) -> None:
    import_str, flow_id = FLOWS[name]
    msgs = messages(SPEC)
    produce_all(broker.bootstrap, topics.ocpp_events, msgs)
    produce_all(broker.bootstrap, topics.ocpp_events, [(b"CP-BAD", b"not an envelope")])
    fed = len(msgs) + 1
    port = free_port()
    env = flow_env(
        broker.bootstrap,
        topics,
        clean_db,
        tail=True,
        CHARGEFLOW_FLOW_METRICS_PORT=str(port),
        CHARGEFLOW_FLOW_BATCH_SIZE="50",
    )
    recovery = ensure_recovery_dir(tmp_path / "recovery", 1)
    log = tmp_path / "flow.log"
    proc = start_flow(env, "-r", str(recovery), "-s", "1", "-b", "0", log=log, flow=import_str)
    try:
        _check_the_counts_of_what_was_fed(port, name, topics, fed)
        batches = _check_the_sink_histograms(port, flow_id)
        _check_caught_up_and_ready(port, flow_id, topics, batches)
    finally:
        rc = stop_flow(proc)
    assert rc == 0, log.read_text()[-3000:]
    assert f"health and metrics on http://127.0.0.1:{port}" in log.read_text()


@pytest.mark.parametrize("database", ["missing", "refused"])
def test_flow_readiness_is_503_while_the_database_is_not_there(
    database: str,
    broker: EmbeddedBroker,
    topics: Topics,
    pg_server: DatabaseServer,
    tmp_path: Path,
) -> None:
    if database == "missing":
        url = pg_server.admin_url.rsplit("/", 1)[0] + f"/chargeflow_missing_{uuid.uuid4().hex[:8]}"
    else:
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/chargeflow"
    port = free_port()
    env = flow_env(broker.bootstrap, topics, url, tail=True, CHARGEFLOW_FLOW_METRICS_PORT=str(port))
    log = tmp_path / "flow.log"
    proc = start_flow(env, log=log)
    try:
        answer = poll_until(
            lambda: readiness(port), lambda r: r is not None, 60, "the endpoint to answer"
        )
        assert answer is not None
        assert answer.status_code == 503, answer.text
        checks = answer.json()["checks"]
        assert checks["input"] == {"ok": True}
        assert checks["sink"]["ok"] is False
        assert "OperationalError" in checks["sink"]["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
        assert proc.poll() is None  # alive, not ready
    finally:
        stop_flow(proc)


def test_no_endpoint_unless_configured(
    broker: EmbeddedBroker, topics: Topics, clean_db: str, tmp_path: Path
) -> None:
    env = flow_env(broker.bootstrap, topics, clean_db, tail=False)
    env.pop("CHARGEFLOW_FLOW_METRICS_PORT", None)
    log = tmp_path / "flow.log"
    proc = start_flow(env, log=log, flow=FLOWS["status"][0])
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    assert "health and metrics on" not in log.read_text()
