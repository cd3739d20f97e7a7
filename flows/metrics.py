"""What a flow process measures, and the endpoint that serves it.

Metrics (prometheus_client's default registry, with its process metrics), each
updated once per batch, never per event, so the hot path stays as it is:

* ``chargeflow_flow_events_in_total{flow, topic}``: messages read from the input
  topics (consumer errors included: they become dead letters);
* ``chargeflow_flow_dead_letters_total{flow, stage, source_topic}``: messages written to
  the dead-letter topic, by the stage that rejected them (``consume``, ``decode``,
  ``validate``). The free-text reason stays in the dead letter's header: as a label
  it would make one time series per distinct error message;
* ``chargeflow_flow_sink_batch_size{sink}`` and ``chargeflow_flow_sink_write_seconds{sink}``
  (histograms): items per database transaction and the time until it committed,
  waiting out a database outage included;
* ``chargeflow_flow_input_lag{flow, topic, partition}``: messages between the flow's
  position and the partition's end (high watermark), from the statistics librdkafka
  already reports to Bytewax's Kafka source every second, so it costs no request of
  its own. Clamped at 0: Tansu's high watermark can be lower than offsets already
  read after concurrent batched produces (LIBRARY-NOTES), which would give a negative
  lag; a lag of 0 there means "caught up, as far as the broker says". Updated while
  the partition is being polled; before the first statistics arrive it is absent;
* ``chargeflow_flow_epoch_seconds{flow, topic, partition}`` (histogram): time between
  two epoch snapshots of an input partition (Bytewax snapshots every input
  partition at the end of every epoch), i.e. how long epochs take in practice; much
  longer than the configured epoch interval means the flow is backed up (e.g. the
  sink waiting for the database).

:func:`serve` starts :class:`runtime.health.HealthServer` for the process on a thread
(Bytewax owns the main thread) with readiness checks ``input`` (the broker answers
metadata for the input topics) and ``sink`` (the database accepts a connection and
``SELECT 1``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from bytewax.connectors.kafka import KafkaSource
from bytewax.connectors.kafka import _KafkaSourcePartition as _BytewaxKafkaPartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter, Gauge, Histogram

from runtime.health import HealthServer

if TYPE_CHECKING:
    from flows.config import FlowConfig

log = logging.getLogger(__name__)


EVENTS_IN = Counter(
    "chargeflow_flow_events_in", "Messages read from the flow's input topics", ["flow", "topic"]
)
DEAD_LETTERS = Counter(
    "chargeflow_flow_dead_letters",
    "Messages written to the dead-letter topic, by stage",
    ["flow", "stage", "source_topic"],
)
SINK_BATCH_SIZE = Histogram(
    "chargeflow_flow_sink_batch_size",
    "Items written per database transaction",
    ["sink"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000),
)
SINK_WRITE_SECONDS = Histogram(
    "chargeflow_flow_sink_write_seconds",
    "Time until a database transaction committed (outages waited out included)",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INPUT_LAG = Gauge(
    "chargeflow_flow_input_lag",
    "Messages between the flow's position and the partition's high watermark (>= 0)",
    ["flow", "topic", "partition"],
)
EPOCH_SECONDS = Histogram(
    "chargeflow_flow_epoch_seconds",
    "Time between two epoch snapshots of an input partition",
    ["flow", "topic", "partition"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
)


# --------------------------------------------------------------------------- sinks


class SinkMetrics:
    """Batch size and write time of one sink (label children resolved once)."""

    def __init__(self, sink: str) -> None:
        self._size = SINK_BATCH_SIZE.labels(sink)
        self._seconds = SINK_WRITE_SECONDS.labels(sink)

    def observe(self, items: int, seconds: float) -> None:
        self._size.observe(items)
        self._seconds.observe(seconds)


# --------------------------------------------------------------------------- input


def input_lag(
    partition_stats: Mapping[str, Any], position: int, starting_offset: int
) -> int | None:
    """Messages behind the partition end, from librdkafka's per-partition statistics
    (``hi_offset``, ``lo_offset``) and the next offset the flow will read
    (``position``, negative while nothing was read: then ``starting_offset`` says
    where reading starts). Never negative; None while the broker's end is unknown."""
    high = int(partition_stats.get("hi_offset", -1))
    if high < 0:
        return None
    if position < 0:
        if starting_offset == OFFSET_END:
            return 0
        low = int(partition_stats.get("lo_offset", -1))
        position = max(low, 0) if starting_offset == OFFSET_BEGINNING else max(position, 0)
    return max(0, high - position)


class _MeasuredKafkaPartition(_BytewaxKafkaPartition):
    """Bytewax's Kafka source partition, counting its batches, its lag and its epochs."""

    def __init__(
        self,
        flow: str,
        step_id: str,
        config: dict[str, Any],
        topic: str,
        part_idx: int,
        starting_offset: int,
        resume_state: int | None,
        batch_size: int,
        raise_on_errors: bool,
    ) -> None:
        labels = (flow, topic, str(part_idx))
        self._events_in = EVENTS_IN.labels(flow, topic)
        self._lag = INPUT_LAG.labels(*labels)
        self._epoch = EPOCH_SECONDS.labels(*labels)
        self._starting_offset = starting_offset
        self._last_snapshot: float | None = None
        super().__init__(
            step_id,
            config,
            topic,
            part_idx,
            starting_offset,
            resume_state,
            batch_size,
            raise_on_errors,
        )

    def _process_stats(self, json_stats: str) -> None:
        # librdkafka calls this from consume() about once a second (the source asks
        # for statistics.interval.ms=1000); Bytewax's own lag gauge is left out.
        try:
            stats = json.loads(json_stats)["topics"][self._topic]["partitions"][str(self._part_idx)]
        except (KeyError, ValueError):
            return
        lag = input_lag(stats, self._offset, self._starting_offset)
        if lag is not None:
            self._lag.set(lag)

    def next_batch(self) -> list[Any]:
        batch = super().next_batch()
        if batch:
            self._events_in.inc(len(batch))
        return batch

    def snapshot(self) -> int | None:
        now = time.monotonic()
        if self._last_snapshot is not None:
            self._epoch.observe(now - self._last_snapshot)
        self._last_snapshot = now
        return super().snapshot()


class MeasuredKafkaSource(KafkaSource):
    """:class:`bytewax.connectors.kafka.KafkaSource` with the flow's input metrics
    (events in, lag, epoch duration per partition); otherwise the same source
    (Bytewax 0.21.1's partition, whose ``build_part`` this mirrors)."""

    def __init__(
        self,
        flow: str,
        brokers: Sequence[str],
        topics: Sequence[str],
        *,
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        add_config: dict[str, str] | None = None,
        batch_size: int = 1000,
        raise_on_errors: bool = True,
    ) -> None:
        super().__init__(
            brokers, topics, tail, starting_offset, add_config, batch_size, raise_on_errors
        )
        self._flow = flow

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _MeasuredKafkaPartition:
        idx, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(f"cannot resume from a different set of Kafka topics ({topic})")
        config: dict[str, Any] = {
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
        }
        config.update(self._add_config)
        return _MeasuredKafkaPartition(
            self._flow,
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset,
            resume_state,
            self._batch_size,
            self._raise_on_errors,
        )


# --------------------------------------------------------------------------- dead letters


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str:
    for key, value in headers or ():
        if key == name:
            return bytes(value or b"").decode("utf-8", "replace")
    return ""


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self, inner: StatelessSinkPartition[Any], flow: str) -> None:
        self._inner = inner
        self._flow = flow

    def write_batch(self, items: list[Any]) -> None:
        self._inner.write_batch(items)
        # Dead letters are rare: counting them one by one costs nothing that matters.
        for item in items:
            headers = item.headers
            DEAD_LETTERS.labels(
                self._flow,
                _header(headers, "deadletter.stage") or "unknown",
                _header(headers, "deadletter.source.topic"),
            ).inc()

    def close(self) -> None:
        self._inner.close()


class CountingDeadLetterSink(DynamicSink[Any]):
    """The dead-letter sink (a Kafka sink), counting what it wrote by stage."""

    def __init__(self, inner: DynamicSink[Any], flow: str) -> None:
        self._inner = inner
        self._flow = flow

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(
            self._inner.build(step_id, worker_index, worker_count), self._flow
        )


# --------------------------------------------------------------------------- endpoint


def process_id(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """This process's id among the flow's processes: ``bytewax.run``'s ``-i`` /
    ``--process-id``, else BYTEWAX_PROCESS_ID, else 0."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--process-id", type=int, default=None)
    known, _ = parser.parse_known_args(list(argv[1:]))
    if known.process_id is not None:
        return int(known.process_id)
    return int(environ.get("BYTEWAX_PROCESS_ID") or 0)


def endpoint_port(base: int, proc_id: int, per_process: bool = True) -> int:
    """The port of process ``proc_id`` for the configured ``base`` (0 stays 0: free);
    ``per_process`` false: ``base`` for every process (each in its own container).

    >>> endpoint_port(9110, 2), endpoint_port(9110, 2, per_process=False), endpoint_port(0, 2)
    (9112, 9110, 0)
    """
    return 0 if base == 0 else base + (proc_id if per_process else 0)


class InputCheck:
    """Ready when the broker answers metadata for the input topics without error."""

    def __init__(
        self,
        brokers: Sequence[str],
        topics: Sequence[str],
        kafka_config: Mapping[str, str] | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._topics = list(topics)
        self._timeout_s = timeout_s
        # librdkafka's own log lines go to the logging module, not straight to stderr.
        admin_config: dict[str, Any] = {
            "bootstrap.servers": ",".join(brokers),
            **(kafka_config or {}),
            "logger": logging.getLogger("chargeflow.flows.kafka"),
        }
        self._admin = AdminClient(admin_config)

    def __call__(self) -> None:
        for topic in self._topics:
            metadata = self._admin.list_topics(topic, timeout=self._timeout_s)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                reason = found.error.str() if found is not None and found.error else "missing"
                raise ConnectionError(f"input topic {topic}: {reason}")


class SinkCheck:
    """Ready when the database accepts a connection and answers ``SELECT 1``."""

    def __init__(self, database_url: str, name: str, timeout_s: int = 2) -> None:
        self._url = database_url
        self._name = name
        self._timeout_s = timeout_s

    def __call__(self) -> None:
        with psycopg.connect(
            self._url,
            connect_timeout=self._timeout_s,
            autocommit=True,
            application_name=f"{self._name}-health",
        ) as conn:
            conn.execute("SELECT 1")


def serve(
    flow: str,
    config: FlowConfig,
    input_topics: Sequence[str],
    *,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HealthServer | None:
    """Start the flow process's health and metrics endpoint on a thread, on
    ``config.metrics_port`` plus the process id unless ``metrics_port_per_process`` is
    false (:func:`endpoint_port`); returns it
    (None: ``metrics_port`` is None, no endpoint)."""
    if config.metrics_port is None:
        return None
    proc_id = process_id(
        sys.argv if argv is None else argv, os.environ if environ is None else environ
    )
    server = HealthServer(
        host=config.metrics_host,
        port=endpoint_port(config.metrics_port, proc_id, config.metrics_port_per_process),
        name=flow,
    )
    server.add_check("input", InputCheck(config.brokers, input_topics, config.kafka_config))
    server.add_check("sink", SinkCheck(config.database_url, flow))
    port = server.start_in_thread()
    print(
        f"{flow} process {proc_id}: health and metrics on "
        f"http://{config.metrics_host}:{port} (/livez /readyz /metrics)",
        file=sys.stderr,
        flush=True,
    )
    return server
