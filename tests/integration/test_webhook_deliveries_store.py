"""store.webhooks on the real database: rows unique per (endpoint, alert version), claims
that two workers never share (SKIP LOCKED), a lease that hides a claimed row, and
outcomes only the current claim may record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from store import webhooks as store
from store.webhooks import NewDelivery

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(clean_db: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with AsyncConnectionPool(
        clean_db, min_size=2, max_size=4, kwargs={"autocommit": True}, open=False
    ) as opened:
        yield opened


def _rows(n: int, endpoint: str = "ops") -> list[NewDelivery]:
    return [NewDelivery(endpoint, f"a{i}", "open|high|t", {"alert_id": f"a{i}"}) for i in range(n)]


def _status(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT alert_id, status, attempts, last_error FROM webhook_deliveries"
            " ORDER BY alert_id"
        ).fetchall()


async def test_a_version_is_queued_once_per_endpoint(pool: AsyncConnectionPool[Any]) -> None:
    assert await store.insert_deliveries(pool, _rows(3)) == 3
    assert await store.insert_deliveries(pool, _rows(4)) == 1  # a0..a2 are there already
    assert await store.insert_deliveries(pool, _rows(2, endpoint="pager")) == 2
    assert await store.insert_deliveries(pool, []) == 0
    assert await store.count_by_status(pool) == {"pending": 6}


async def test_two_workers_never_claim_the_same_row(pool: AsyncConnectionPool[Any]) -> None:
    await store.insert_deliveries(pool, _rows(40))
    claims = await asyncio.gather(
        *(store.claim_due(pool, ["ops"], limit=15, lease_s=60) for _ in range(4))
    )
    claimed = [d.alert_id for batch in claims for d in batch]
    assert len(claimed) == 40
    assert len(set(claimed)) == 40
    assert all(d.attempt == 1 for batch in claims for d in batch)
    # Claimed rows are leased: nothing is due now.
    assert await store.claim_due(pool, ["ops"], limit=50, lease_s=60) == []
    # Another endpoint's rows are not this worker's.
    await store.insert_deliveries(pool, _rows(1, endpoint="other"))
    assert await store.claim_due(pool, ["ops"], limit=50, lease_s=60) == []


async def test_a_lapsed_claim_cannot_overwrite_the_newer_one(
    pool: AsyncConnectionPool[Any], clean_db: str
) -> None:
    """A worker that died (or stalled) mid-request: its lease runs out, another worker
    claims the row again, and the first one's late outcome is refused."""
    await store.insert_deliveries(pool, _rows(1))
    [stale] = await store.claim_due(pool, ["ops"], limit=5, lease_s=0.3)
    [fresh] = await _claim_when_due(pool, "the lapsed lease to free the row")
    assert (stale.attempt, fresh.attempt) == (1, 2)
    assert not await store.record_delivered(pool, stale)
    assert not await store.record_dead(pool, stale, "late")
    assert await store.record_retry(pool, fresh, "HTTP 503 Service Unavailable", 0.0)
    assert _status(clean_db) == [("a0", "pending", 2, "HTTP 503 Service Unavailable")]
    [third] = await _claim_when_due(pool, "the retry to come due")
    assert third.attempt == 3
    assert await store.record_delivered(pool, third)
    assert not await store.record_retry(pool, third, "twice", 0.0)  # settled: final
    assert _status(clean_db) == [("a0", "delivered", 3, None)]
    assert await store.claim_due(pool, ["ops"], limit=5, lease_s=60) == []


async def _claim_when_due(
    pool: AsyncConnectionPool[Any], what: str, within: float = 10.0
) -> list[store.DueDelivery]:
    """Claim until something is due (poll with a deadline)."""
    deadline = time.monotonic() + within
    while not (claimed := await store.claim_due(pool, ["ops"], limit=5, lease_s=60)):
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.05)
    return claimed


async def test_a_dead_row_keeps_its_last_error(
    pool: AsyncConnectionPool[Any], clean_db: str
) -> None:
    await store.insert_deliveries(pool, _rows(1))
    [due] = await store.claim_due(pool, ["ops"], limit=5, lease_s=60)
    assert await store.record_dead(pool, due, "no answer within 10 s")
    assert _status(clean_db) == [("a0", "dead", 1, "no answer within 10 s")]
    assert await store.count_by_status(pool) == {"dead": 1}
