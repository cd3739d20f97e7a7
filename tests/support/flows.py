"""Running the Bytewax flows under test: the environment and command line of a flow
process, a flow process's lifetime, its input counters, Kafka-like input for in-process
runs, publishing raw messages, and a reference run's tables (sessions, faults)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, run_main
from prometheus_client.parser import text_string_to_metric_families

from bench.common import fresh_database, table_rows
from bus.envelope import Envelope, encode_envelope
from bus.producer import Producer, producer_config
from bus.topics import Topics
from chargeflow.stack import DatabaseServer
from flows.faults.dataflow import FaultsFlowConfig
from flows.faults.dataflow import build_flow as build_faults_flow
from flows.sessions.dataflow import SessionsFlowConfig, build_flow
from tests.support.paths import ROOT


def flow_env(bootstrap: str, database_url: str, topics: Topics, tail: bool) -> dict[str, str]:
    prefix = topics.ocpp_events.removesuffix("ocpp.events")
    return {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CHARGEFLOW_DATABASE_URL": database_url,
        "CHARGEFLOW_TOPIC_PREFIX": prefix,
        "CHARGEFLOW_FLOW_TAIL": "true" if tail else "false",
        "PYTHONUNBUFFERED": "1",
    }


FLOW_ARGV = [sys.executable, "-m", "flows.run", "flows.sessions.dataflow:from_env()"]


@contextmanager
def flow_process(
    argv: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A flow in a process (and session) of its own, its output in ``log``; stopped with
    SIGINT (SIGKILL after 20 s) unless it already exited, and it must exit cleanly."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode in (0, -signal.SIGINT, 130), log.read_text()[-3000:]


def events_in(port: int) -> dict[str, float]:
    """``chargeflow_flow_events_in_total`` of the flow's metrics endpoint, by topic."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        s.labels["topic"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "chargeflow_flow_events_in_total"
    }


def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    try:
        for key, value in messages:
            producer.publish_sync(topic, key, value)
    finally:
        producer.close()


def kafka_like_input(items: Sequence[Any], batch_size: int = 4) -> TestingSource[Any]:
    """Source for a flow's ``build_flow_with``: ``items`` (Kafka messages, and errors) in
    batches, as the Kafka source yields them."""
    return TestingSource(list(items), batch_size)


def message(env: Envelope | bytes, offset: int) -> KafkaSourceMessage[Any, Any]:
    value = env if isinstance(env, bytes) else encode_envelope(env)
    key = b"CP" if isinstance(env, bytes) else env.charge_point_id.encode()
    return KafkaSourceMessage(key=key, value=value, topic="ocpp.events", partition=0, offset=offset)


def reference_tables(
    server: DatabaseServer, bootstrap: str, topics: Topics
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """One uninterrupted run over the whole topic, in a database of its own."""
    with fresh_database(server, "chargeflow_test_ref") as url:
        run_main(
            build_flow(
                SessionsFlowConfig(brokers=[bootstrap], database_url=url, topics=topics, tail=False)
            )
        )
        return table_rows(url)


T = TypeVar("T")


def stored_versions(url: str) -> list[tuple[Any, ...]]:
    """Every alert version the faults flow stored: (alert_id, version_key, status,
    severity, at)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT alert_id, version_key, status, severity, at FROM alert_events"
            " ORDER BY alert_id, version_key"
        ).fetchall()


def faults_reference(
    server: DatabaseServer, bootstrap: str, topics: Topics, read: Callable[[str], T]
) -> T:
    """An uninterrupted in-process faults flow run from offset 0 over both its topics,
    into a database of its own (publishing nothing); what ``read`` reads from it."""
    with fresh_database(server, "chargeflow_test_faults_ref") as url:
        config = FaultsFlowConfig(
            brokers=[bootstrap], database_url=url, topics=topics, tail=False, publish_alerts=False
        )
        run_main(build_faults_flow(config))
        return read(url)
