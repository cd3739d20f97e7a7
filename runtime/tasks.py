"""What a stopping process is still waiting for: when shutdown takes longer than it
should, the tasks that hold it up are logged with the await chain each is suspended in
(asyncio's own ``Task.get_stack`` shows one frame of a suspended coroutine, which rarely
says why it waits)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

log = structlog.get_logger("chargeflow.shutdown")


async def cancel_and_wait(*tasks: asyncio.Task[Any], retry_s: float = 0.5) -> None:
    """Cancel the tasks and wait until every one has ended, cancelling again every
    ``retry_s`` those still running; what they raise is theirs (not re-raised).

    The retry matters on Python 3.11: a cancellation that lands as an awaited
    ``asyncio.wait_for`` completes is lost (cpython gh-86296, fixed in 3.12), and
    psycopg_pool waits for a connection that way (psycopg#1345): a worker loop whose
    cancellation was lost while it got its first connection would otherwise run on and
    hold its owner's shutdown for ever.

    >>> async def stubborn():
    ...     try:
    ...         await asyncio.sleep(10)
    ...     except asyncio.CancelledError:
    ...         pass  # a lost cancellation looks like this
    ...     await asyncio.sleep(10)
    >>> async def main():
    ...     task = asyncio.create_task(stubborn())
    ...     await asyncio.sleep(0)
    ...     await cancel_and_wait(task, retry_s=0.01)
    ...     return task.cancelled()
    >>> asyncio.run(main())
    True
    """
    running = set(tasks)
    while running := {t for t in running if not t.done()}:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The suspended frames of ``task``, outermost first, as ``file:line in name``; the
    last entry names what the innermost coroutine awaits when that is not a coroutine
    (a future, a lock's waiter).

    >>> async def inner(): await asyncio.sleep(10)
    >>> async def outer(): await inner()
    >>> async def main():
    ...     task = asyncio.create_task(outer())
    ...     await asyncio.sleep(0)
    ...     chain = awaiting(task)
    ...     task.cancel()
    ...     return [entry.split(" in ")[-1] for entry in chain]
    >>> asyncio.run(main())[:3]
    ['outer', 'inner', 'sleep']
    """
    chain: list[str] = []
    current: Any = task.get_coro()
    for _ in range(64):  # an await chain is never this deep; a cycle would be a bug
        frame = getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
        if frame is None:
            # The innermost await is on a future (its iterator says nothing): the one
            # the task waits for.
            waited = getattr(task, "_fut_waiter", None) or current
            if waited is not None:
                chain.append(f"awaiting {waited!r}"[:300])
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        current = getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None)
    return chain


class ShutdownWatch:
    """Arm it when a shutdown begins; if the watched block has not ended ``grace_s``
    seconds later, every task still running is logged with its await chain."""

    def __init__(self, what: str, grace_s: float) -> None:
        self.what = what
        self.grace_s = grace_s
        self._reporter: asyncio.Task[None] | None = None

    def arm(self) -> None:
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report(), name="shutdown-watch")

    async def _report(self) -> None:
        await asyncio.sleep(self.grace_s)
        me = asyncio.current_task()
        waiting = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        log.warning(
            "shutdown is taking long; these tasks are still running",
            what=self.what,
            grace_s=self.grace_s,
            tasks={task.get_name(): awaiting(task) for task in waiting},
        )

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.wait([self._reporter])  # its cancellation is not ours to raise
            self._reporter = None


@contextlib.asynccontextmanager
async def shutdown_watch(what: str, grace_s: float) -> AsyncIterator[ShutdownWatch]:
    """A :class:`ShutdownWatch` over the block: ``watch.arm()`` where stopping begins
    (e.g. before leaving a TaskGroup whose tasks were told to stop)."""
    watch = ShutdownWatch(what, grace_s)
    try:
        yield watch
    finally:
        await watch.close()
