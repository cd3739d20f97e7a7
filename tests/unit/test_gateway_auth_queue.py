"""The gateway's login queueing and failure keys, as pure logic: fair argon2 queue
(known addresses first, then round-robin by source), login admission (wait in turn
while the wait is short, else Retry-After), cool-down keys per source."""

from __future__ import annotations

import asyncio

from ingest.gateway.admission import FairVerifier, LoginAdmission
from ingest.gateway.limits import FailureLimiter, source_key


async def test_the_verifier_serves_known_addresses_first_then_sources_in_turn() -> None:
    verifier = FairVerifier(slots=1, max_pending=10)
    order: list[str] = []
    await verifier.acquire("attacker", priority=False)  # holds the only slot

    async def wait(name: str, source: str, priority: bool) -> None:
        await verifier.acquire(source, priority)
        order.append(name)
        verifier.release()

    tasks = [
        asyncio.create_task(wait(n, src, prio))
        for n, src, prio in (
            ("attacker-2", "attacker", False),
            ("attacker-3", "attacker", False),
            ("other-1", "other", False),
            ("known", "nat", True),
        )
    ]
    await asyncio.sleep(0)  # every waiter queued
    assert verifier.pending == 3
    assert verifier.full(priority=False) is False
    verifier.release()
    await asyncio.gather(*tasks)
    assert order == ["known", "attacker-2", "other-1", "attacker-3"]


async def test_the_verifier_refuses_round_robin_waiters_beyond_its_bound_only() -> None:
    verifier = FairVerifier(slots=1, max_pending=1)
    await verifier.acquire("a", priority=False)
    waiter = asyncio.create_task(verifier.acquire("a", priority=False))
    await asyncio.sleep(0)
    assert verifier.full(priority=False)
    assert not verifier.full(priority=True)  # a known address always queues
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert verifier.pending == 0


async def test_login_admission_queues_short_waits_and_refuses_long_ones() -> None:
    admission = LoginAdmission(limit=1, max_wait_s=2.0)
    admission.login_seconds = 1.0
    assert await admission.enter() is None
    second = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    third = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    assert admission.waiting == 2  # expected waits 1 s and 2 s: queued
    retry_after = await admission.enter()  # 3 s: refused
    assert retry_after is not None
    assert 2 <= retry_after <= 4
    admission.done(0.0, 1.0)
    assert await second is None
    admission.done(1.0, 2.0)
    assert await third is None


def test_cool_downs_key_on_the_source_and_ipv6_by_its_64() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key(None) == "unknown"


def test_a_failure_during_a_cool_down_extends_it_without_a_second_alert() -> None:
    limiter = FailureLimiter(limit=2, window_s=60, cooldown_s=10)
    assert limiter.failure("k", 0.0) is None
    assert limiter.failure("k", 1.0) == 2  # starts the cool-down: one alert
    assert limiter.failure("k", 5.0) is None
    assert limiter.blocked_for("k", 14.0) > 0  # extended to 15
    assert limiter.blocked_for("k", 15.5) == 0
