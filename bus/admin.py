"""Topic administration and small consumer helpers (manual assignment, no group join)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from runtime.logs import kafka_logger, with_kafka_logger

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap: str, topics: Iterable[str], *, partitions: int = 1, timeout: float = 30.0
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = admin_client(bootstrap)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
        wanted = [t for t in topics if t not in existing]
        if not wanted:
            return
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
            request_timeout=timeout,
        )
        for topic, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create topic {topic}: {exc}") from exc
    finally:
        admin.poll(0)  # hands librdkafka's queued log lines to the logger


def admin_client(bootstrap: str, **extra: Any) -> AdminClient:
    """An AdminClient whose librdkafka lines go to the Python logger (on ``poll``)."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": kafka_logger(), **extra}
    return AdminClient(config)


def broker_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    # log_level 0: a probe of a down broker must not spray librdkafka connect errors.
    try:
        admin_client(bootstrap, log_level=0).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def wait_for_broker(bootstrap: str, *, every_s: float = 5.0) -> None:
    """Block until the broker answers a metadata request, logging while it does not.

    For clients that would otherwise wait silently (Bytewax's Kafka connectors list
    partitions with no timeout and never poll their admin client, so librdkafka's
    lines about the unreachable broker would never reach the logger).
    """
    admin = admin_client(bootstrap)
    waited = 0.0
    while True:
        try:
            admin.list_topics(timeout=every_s)
        except KafkaException as exc:
            waited += every_s
            log.warning("Kafka unreachable; waiting (%.0f s so far): %s", waited, exc)
        else:
            if waited:
                log.info("Kafka reachable after %.0f s", waited)
            return
        finally:
            admin.poll(0)


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    admin = admin_client(bootstrap)
    try:
        meta = admin.list_topics(topic, timeout=timeout)
    finally:
        admin.poll(0)
    return len(meta.topics[topic].partitions)


def read_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> Iterator[Message]:
    """Every message currently in ``topic`` (all partitions), then stop.

    Manual assignment from the beginning with partition-EOF events, so no
    consumer group join is needed. (Not high watermarks: Tansu reports a too-low
    high watermark after batched produces from concurrent producers.)
    """
    consumer = Consumer(
        with_kafka_logger(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "chargeflow-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                # A partition's EOF comes only from a fetch that returns nothing; Tansu
                # holds a fetch at the end until a message arrives or this wait ends, so
                # with the default 500 ms a topic written more often never reaches its end.
                "fetch.wait.max.ms": 10,
            }
        )
    )
    try:
        parts = partition_count(bootstrap, topic)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(parts)])
        pending = set(range(parts))
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach the end within {timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(err)
            yield msg
    finally:
        consumer.close()
