"""runtime.retry: the backoff shape, and that only the dependency's errors are retried."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.retry import DATABASE, KAFKA, MQTT, Backoff, async_retrying, retrying


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    policy = DATABASE.capped(1.0)
    assert [policy.base(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(7)
    for failures in range(1, 40):
        delay = policy.delay(failures, rng)
        assert policy.base(failures) / 2 <= delay <= policy.base(failures) <= 1.0
    assert DATABASE.capped(0.05).initial_s == 0.05  # the first wait is never above the cap
    for kind in (DATABASE, KAFKA, MQTT):
        assert 0 < kind.initial_s < kind.max_s
    with pytest.raises(ValueError, match="positive"):
        Backoff(initial_s=0.0, max_s=1.0)


def test_retrying_retries_only_what_it_is_told_and_gives_up_after_attempts() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "written"

    fast = Backoff(initial_s=0.001, max_s=0.002)
    for attempt in retrying(
        fast, ConnectionError, before_sleep=lambda s: waits.append(s.attempt_number)
    ):
        with attempt:
            result = flaky()
    assert result == "written"
    assert len(calls) == 3
    assert waits == [1, 2]

    def always_down() -> None:
        for attempt in retrying(fast, ConnectionError, attempts=2):
            with attempt:
                raise ConnectionError("still down")

    with pytest.raises(ConnectionError):
        always_down()
    other: list[int] = []

    def buggy() -> None:
        for attempt in retrying(fast, ConnectionError):
            with attempt:
                other.append(1)
                raise KeyError("a bug is not an outage")

    with pytest.raises(KeyError):
        buggy()
    assert other == [1]


async def test_async_retrying_stops_when_asked() -> None:
    stop = asyncio.Event()
    tries = 0

    async def sleep(delay: float) -> None:
        stop.set()  # a stop request arrives while it waits

    async def broker_away() -> None:
        nonlocal tries
        async for attempt in async_retrying(
            MQTT, ConnectionError, sleep=sleep, stop_when=stop.is_set
        ):
            with attempt:
                tries += 1
                raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        await broker_away()
    assert tries == 2  # the try after the wait, then no more
