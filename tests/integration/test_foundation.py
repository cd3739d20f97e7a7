"""The shared infrastructure itself: migrations, storage mode, broker round trip."""

from __future__ import annotations

import threading

import pytest

from bus.admin import read_topic
from bus.envelope import Envelope, EnvelopeError, Kind, decode_envelope, encode_envelope
from bus.producer import Producer, PublishError, producer_config
from bus.topics import Topics
from chargeflow.stack import DatabaseServer, EmbeddedBroker
from store.db import available_storage_mode, current_revision, migrate, storage_mode


def test_migrations_apply_twice_and_report_the_storage_mode(database_url: str) -> None:
    first = migrate(database_url)
    second = migrate(database_url)
    assert first == second == storage_mode(database_url)
    # TimescaleDB wherever the server offers the extension, plain PostgreSQL elsewhere.
    assert first is available_storage_mode(database_url)
    assert current_revision(database_url) is not None


def test_fresh_database_migrates_from_nothing(pg_server: DatabaseServer) -> None:
    url = pg_server.create_database("chargeflow_test_fresh_migrate")
    try:
        assert migrate(url) is available_storage_mode(url)
    finally:
        pg_server.drop_database("chargeflow_test_fresh_migrate")


def test_envelope_round_trip_through_the_broker(broker: EmbeddedBroker, topics: Topics) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    env = Envelope(
        message_id="abc",
        charge_point_id="CP-1",
        received_at=now,
        measured_at=now,
        kind=Kind.OCPP_CALL,
        ocpp_version="1.6",
        action="Heartbeat",
        payload={},
    )
    producer = Producer(producer_config(broker.bootstrap))
    try:
        partition, offset = producer.publish_sync(topics.ocpp_events, b"CP-1", encode_envelope(env))
    finally:
        producer.close()
    assert offset >= 0
    messages = list(read_topic(broker.bootstrap, topics.ocpp_events))
    assert [decode_envelope(m.value()) for m in messages] == [env]
    assert messages[0].partition() == partition


def test_reading_a_topic_ends_while_it_is_still_written(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    """A station reporting every 250 ms keeps its partition busy; the reader still
    reaches the end it found and returns what was there."""
    producer = Producer(producer_config(broker.bootstrap))
    written = threading.Event()
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            producer.publish_sync(topics.ocpp_events, b"CP-1", b"reading")
            written.set()
            stop.wait(0.25)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert written.wait(20)
        first = len(list(read_topic(broker.bootstrap, topics.ocpp_events, timeout=15)))
        second = len(list(read_topic(broker.bootstrap, topics.ocpp_events, timeout=15)))
    finally:
        stop.set()
        writer.join()
        producer.close()
    assert 1 <= first <= second


def test_publish_to_unreachable_broker_fails_within_the_delivery_timeout() -> None:
    from chargeflow.stack import free_port

    producer = Producer(producer_config(f"127.0.0.1:{free_port()}", delivery_timeout_ms=500))
    try:
        with pytest.raises(PublishError):
            producer.publish_sync("ocpp.events", b"k", b"v", timeout=10)
    finally:
        producer.close(timeout=1)


def test_decode_rejects_garbage_with_a_reason() -> None:
    with pytest.raises(EnvelopeError, match="not valid JSON"):
        decode_envelope(b"{oops")
    with pytest.raises(EnvelopeError, match="does not match schema"):
        decode_envelope(b'{"message_id": 5}')
    with pytest.raises(EnvelopeError, match="no value"):
        decode_envelope(None)


async def test_async_publish_without_a_delivery_report_fails_after_the_guard() -> None:
    """Every producer (gateway, meter bridge, commands) fails an awaited publish whose
    delivery report does not come within ``guard_s``, even when librdkafka would keep
    the message far longer (here 300 s), and settles reports in batches."""
    import time

    from chargeflow.stack import free_port

    producer = Producer(
        producer_config(f"127.0.0.1:{free_port()}", delivery_timeout_ms=300_000), guard_s=0.5
    )
    try:
        started = time.monotonic()
        with pytest.raises(PublishError, match=r"no delivery report within 0\.5 s"):
            await producer.publish("ocpp.events", b"k", b"v")
        assert time.monotonic() - started < 5
    finally:
        await producer.aclose(0.1)


async def test_async_publishes_are_confirmed_in_order(
    broker: EmbeddedBroker, topics: Topics
) -> None:
    import asyncio

    producer = Producer(producer_config(broker.bootstrap))
    try:
        results = await asyncio.gather(
            *(
                producer.publish(topics.ocpp_events, b"CP-ORDER", str(i).encode())
                for i in range(500)
            )
        )
    finally:
        await producer.aclose()
    offsets = [offset for _, offset in results]
    assert offsets == sorted(offsets)  # one key: one partition, in publish order
    assert len(set(offsets)) == 500
