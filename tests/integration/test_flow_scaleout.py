"""The sessions flow as a 2-process Bytewax cluster over a 4-partition topic writes
exactly the tables one process writes."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from bench.common import (
    StreamSpec,
    flow_env,
    fresh_database,
    messages,
    produce_all,
    sample_count,
    start_flow,
    table_rows,
)
from bus.admin import ensure_topics
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker, free_port
from flows.recovery import ensure_process_partitions, ensure_recovery_dir

pytestmark = pytest.mark.integration

SPEC = StreamSpec(stations=16, meter_events=1_600, meter_values_per_session=9, values_per_event=3)


def wait_ok(procs: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float) -> None:
    try:
        for proc in procs:
            proc.wait(timeout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log.read_text()[-3000:]


def test_two_processes_write_the_same_tables_as_one(
    broker: EmbeddedBroker, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:8]}.")
    ensure_topics(broker.bootstrap, topics.all(), partitions=4)
    msgs = messages(SPEC)
    produce_all(broker.bootstrap, topics.ocpp_events, msgs)

    with (
        fresh_database(pg_server, "chargeflow_test_one") as one_url,
        fresh_database(pg_server, "chargeflow_test_two") as two_url,
    ):
        one_log = tmp_path / "one.log"
        one = start_flow(
            flow_env(broker.bootstrap, topics, one_url, tail=False),
            "-r",
            str(ensure_recovery_dir(tmp_path / "rec-one", 1)),
            "-s",
            "1",
            "-b",
            "0",
            log=one_log,
        )

        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        recovery = ensure_recovery_dir(tmp_path / "rec-two", 2)
        env = flow_env(broker.bootstrap, topics, two_url, tail=False)
        logs = [tmp_path / f"proc{i}.log" for i in range(2)]
        cluster = [
            start_flow(
                env,
                "-i",
                str(i),
                "-a",
                addresses,
                "-r",
                str(recovery),
                "-s",
                "1",
                "-b",
                "0",
                log=logs[i],
            )
            for i in range(2)
        ]
        wait_ok([one, *cluster], [one_log, *logs], timeout=60)

        single = table_rows(one_url)
        assert len(single[1]) == sample_count(msgs)
        assert len(single[0]) == sum(1 for _, v in msgs if b'"StartTransaction"' in v)
        assert sum(1 for row in single[0] if row[5] == "closed") > 0
        assert table_rows(two_url) == single


def test_two_processes_with_a_volume_each_resume_without_double_counting(
    broker: EmbeddedBroker, pg_server: DatabaseServer, tmp_path: Path
) -> None:
    """The deployment's layout (deploy/): each process has its own recovery volume with
    its share of the partitions; a second run resumes from them and changes nothing."""
    topics = Topics.with_prefix(f"t{uuid.uuid4().hex[:8]}.")
    ensure_topics(broker.bootstrap, topics.all(), partitions=4)
    msgs = messages(SPEC)
    produce_all(broker.bootstrap, topics.ocpp_events, msgs)

    with fresh_database(pg_server, "chargeflow_test_volumes") as url:
        env = flow_env(broker.bootstrap, topics, url, tail=False)
        volumes = [tmp_path / f"volume{i}" for i in range(2)]

        def run_cluster(name: str) -> None:
            addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
            logs = [tmp_path / f"{name}{i}.log" for i in range(2)]
            cluster = [
                start_flow(
                    env,
                    "-i",
                    str(i),
                    "-a",
                    addresses,
                    "-r",
                    str(ensure_process_partitions(volumes[i], 2, i, 2)),
                    "-s",
                    "1",
                    "-b",
                    "0",
                    log=logs[i],
                )
                for i in range(2)
            ]
            wait_ok(cluster, logs, timeout=60)

        run_cluster("first")
        first = table_rows(url)
        assert len(first[1]) == sample_count(msgs)
        assert len(first[0]) == sum(1 for _, v in msgs if b'"StartTransaction"' in v)
        assert [sorted(p.name for p in v.glob("part-*.sqlite3")) for v in volumes] == [
            ["part-0.sqlite3"],
            ["part-1.sqlite3"],
        ]
        run_cluster("second")
        assert table_rows(url) == first
