"""Waiting on a condition with a deadline: the tests' only synchronisation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``fetch`` until ``done(result)``; fail with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


async def apoll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """``poll_until`` that keeps the event loop (and the gateway or bridge on it) running:
    ``fetch`` runs in a thread."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(fetch)
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


async def apoll_async(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """``apoll`` for a coroutine ``fetch`` that runs on the loop itself (an OCPP CALL
    over a socket the test holds open)."""
    deadline = time.monotonic() + within
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)
