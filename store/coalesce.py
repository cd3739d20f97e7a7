"""Group commit for small writes: many coroutines each await their own row, one task
writes what has queued up as one multi-row statement.

A reconnect storm makes every station run the same few single-row writes (login
bookkeeping, the connection row, boot, status), each its own round trip and commit on
a pool connection. Here each kind of write has one writer task: while it writes a
batch the next rows queue, and it takes them all (up to ``max_rows``) as the next
batch, so the statements per second stay bounded by the database's round trips while
the rows per statement grow with the load. ``write`` returns only once the statement
holding its row committed (or raises what it raised), so nothing is acknowledged
before it is durable. A batch that loses a deadlock against another writer is retried
(``deadlock_retries``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import psycopg.errors

Row = TypeVar("Row")


class CoalescingWriter(Generic[Row]):
    """``write_many(rows)`` runs one statement for a batch of rows; ``write(row)``
    returns once the batch holding ``row`` is committed."""

    def __init__(
        self,
        write_many: Callable[[list[Row]], Awaitable[None]],
        *,
        name: str,
        max_rows: int = 1000,
        deadlock_retries: int = 3,
    ) -> None:
        self.write_many = write_many
        self.name = name
        self.max_rows = max_rows
        self.deadlock_retries = deadlock_retries
        self._queue: list[tuple[Row, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # statements run (for tests and benches)
        self.rows = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"coalesce-{self.name}"
            )

    async def write(self, row: Row) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError(f"writer {self.name} is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue[: self.max_rows], self._queue[self.max_rows :]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        rows = [row for row, _ in batch]
        error: BaseException | None = None
        for attempt in range(self.deadlock_retries + 1):
            try:
                await self.write_many(rows)
                error = None
                break
            except psycopg.errors.DeadlockDetected as exc:
                error = exc
                if attempt == self.deadlock_retries:
                    break
            except asyncio.CancelledError:
                error = RuntimeError(f"writer {self.name} stopped")
                _settle(batch, error)
                raise
            except Exception as exc:
                error = exc
                break
        self.batches += 1
        self.rows += len(rows)
        _settle(batch, error)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _settle(self._queue, RuntimeError(f"writer {self.name} stopped"))
        self._queue = []


def _settle(batch: list[tuple[Row, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, future in batch:
        if future.done():  # the caller was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
