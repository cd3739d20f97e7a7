"""Waking the requests that wait on a command when its row changes (PostgreSQL
LISTEN/NOTIFY).

The ``commands_changed`` trigger (migration 0030) notifies ``chargeflow_commands`` with
the command id whenever a command's status or ``sent_at`` changes, whoever changed it
(a gateway replica, an API replica, a heartbeat). Each API process holds one listening
connection (a task its lifespan owns) and sets the events of the waiters on that
command; the waiters then read the row itself. A notification is only a wake-up: a
waiter still re-reads every ``RECHECK_S`` (a notification missed while the listener
reconnects, a pending command passing its ``expires_at``, which no update marks), and
every waiter is woken when the listener (re)connects.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import structlog
from tenacity import RetryCallState

from runtime.retry import DATABASE, async_retrying, failure, next_wait
from runtime.tasks import cancel_and_wait

CHANNEL = "chargeflow_commands"
RECHECK_S = 1.0

log = structlog.get_logger("chargeflow.api.command_changes")


class CommandChanges:
    """The process's listener; ``watch(command_id)`` gives an event set on each change."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.backend_pid: int | None = None  # the listening connection's, while it listens

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="command-changes")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    @contextmanager
    def watch(self, command_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the command changes (clear it before each read)."""
        event = asyncio.Event()
        self._waiters.setdefault(command_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters[command_id]
            waiters.discard(event)
            if not waiters:
                del self._waiters[command_id]

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def _wake(self, payload: str) -> None:
        try:
            command_id = uuid.UUID(payload)
        except ValueError:
            return  # not ours: the channel is chargeflow's, but a notify is anyone's to send
        for event in self._waiters.get(command_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _listen_forever(self) -> None:
        def lost(state: RetryCallState) -> None:
            log.warning(
                "command notifications lost; waiters re-read every second meanwhile",
                error=str(failure(state)),
                delay=round(next_wait(state), 2),
            )

        async for attempt in async_retrying(DATABASE, psycopg.Error, before_sleep=lost):
            with attempt:
                await self._listen()

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = conn.info.backend_pid
            self.listening.set()
            self._wake_all()  # anything that changed while nobody listened
            try:
                async for notify in conn.notifies():
                    self._wake(notify.payload)
            finally:
                self.listening.clear()
                self.backend_pid = None
