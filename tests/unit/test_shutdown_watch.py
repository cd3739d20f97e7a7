"""A shutdown that takes too long names the tasks holding it up and what they await."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from runtime.tasks import awaiting, shutdown_watch
from tests.support.polling import apoll


async def test_a_slow_shutdown_logs_the_tasks_still_running() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # ignores being told to stop until released

    with capture_logs() as events:
        async with shutdown_watch("test", grace_s=0.05) as watch, asyncio.TaskGroup() as tg:
            task = tg.create_task(stubborn(), name="stubborn-task")
            await asyncio.sleep(0)
            watch.arm()
            task.cancel()
            await apoll(
                lambda: [e for e in events if "still running" in e["event"]],
                bool,
                10,
                "the report of the task that does not stop",
                interval=0.01,
            )
            release.set()
    reports = [e for e in events if "still running" in e["event"]]
    assert len(reports) == 1
    chain = reports[0]["tasks"]["stubborn-task"]
    assert chain[0].endswith(" in stubborn")
    assert chain[-1].startswith("awaiting <Future")


async def test_a_prompt_shutdown_logs_nothing() -> None:
    with capture_logs() as events:
        async with shutdown_watch("test", grace_s=0.05) as watch, asyncio.TaskGroup() as tg:
            task = tg.create_task(asyncio.sleep(3600))
            await asyncio.sleep(0)
            watch.arm()
            task.cancel()
        assert watch._reporter is None  # closed with the block: it can no longer report
    assert not [e for e in events if "still running" in e["event"]]


async def test_the_await_chain_reaches_the_innermost_wait() -> None:
    lock = asyncio.Lock()
    await lock.acquire()

    async def inner() -> None:
        async with lock:
            pass

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    chain = awaiting(task)
    task.cancel()
    await asyncio.wait([task])
    assert [entry.rsplit(" in ", 1)[-1] for entry in chain[:2]] == ["outer", "inner"]
    assert chain[-1].startswith("awaiting <Future")
