"""Reading a topic on the real broker (the gateway's commands, the workers' TopicReader):
a record is handed on as soon as it is there, not after the read's timeout (which is for
an idle topic)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from bus.reader import FETCH_WAIT_MS, next_batch
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker

pytestmark = pytest.mark.integration

TIMEOUT_S = 30.0


def test_a_lone_command_is_read_without_waiting_out_the_timeout(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "test-next-batch",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )
    consumer.assign([TopicPartition(topics.ocpp_commands, 0, 0)])
    assert next_batch(consumer, 200, 0.5) == []  # nothing there yet: an empty batch
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topics.ocpp_commands, b"one command", partition=0)
    assert producer.flush(10) == 0
    try:
        started = time.monotonic()
        batch = next_batch(consumer, 200, TIMEOUT_S)
        elapsed = time.monotonic() - started
        # consume(200, 30) alone returned this one message only after 30 s.
        assert [m.value() for m in batch] == [b"one command"]
        assert elapsed < TIMEOUT_S / 3, elapsed
    finally:
        consumer.close()
