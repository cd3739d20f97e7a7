"""Stopping the command router does not wait on a Kafka call that does not return.

The router's consumer thread reads ``ocpp.commands`` in calls that normally return
within ``poll_s``; a call that hangs (a stuck broker connection) must not hold the
gateway's shutdown: after ``stop_wait_s`` the router stops without that consumer.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from bus.producer import Producer, producer_config
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.commands import CommandRouter
from tests.support.polling import poll_until


async def test_stop_does_not_wait_for_a_consumer_call_that_does_not_return(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    pool = AsyncConnectionPool(
        clean_db, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True, timeout=30)
    producer = Producer(producer_config(broker.bootstrap))
    # A consume call that blocks for 20 s stands in for one that never returns.
    router = CommandRouter(
        gateway_id="gw-stop",
        bootstrap=broker.bootstrap,
        topics=topics,
        pool=pool,
        producer=producer,
        lookup=lambda _cp: None,
        registry=CollectorRegistry(),
        poll_s=20.0,
        stop_wait_s=1.0,
    )
    try:
        await router.start()
        await asyncio.to_thread(
            poll_until,
            lambda: router._executor._work_queue.qsize() == 0 and router._consumer,
            bool,
            10,
            "the consumer thread inside its first consume call",
        )
        started = time.monotonic()
        await router.stop()
        stopped_after = time.monotonic() - started
    finally:
        await producer.aclose(5.0)
        await pool.close()
    assert stopped_after < 10.0, f"stop waited {stopped_after:.1f} s for the consume call"
