"""Following a command's row until it is final: for ``?wait=N`` and the server-sent
events of ``/v1/commands/{id}/events``.

The row is read at once and again whenever :class:`api.command_changes.CommandChanges`
says it changed (at least every ``RECHECK_S``), with a deadline; each read takes a
pooled connection only for the read, so a thousand waiting clients do not hold a
thousand connections.
A ``pending`` command past ``expires_at`` counts as settled too: no gateway will send
it any more (a heartbeat marks it expired).

The status history is derived from the row's timestamps (``requested_at`` pending,
``sent_at`` sent, ``completed_at`` the outcome), so a stream lists every step once and
in order even when two of them happened between two reads.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.command_changes import RECHECK_S, CommandChanges
from bus.commands import CommandStatus
from store.commands import CommandRecord, get_command


def settled(record: CommandRecord, now: datetime | None = None) -> bool:
    if record.status.terminal:
        return True
    return record.status is CommandStatus.PENDING and record.expires_at <= (
        now or datetime.now(UTC)
    )


def history(record: CommandRecord) -> list[tuple[CommandStatus, datetime]]:
    """The statuses the command went through, oldest first.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> r = CommandRecord(uuid.UUID(int=1), "CP", "Reset", {}, "1.6", "ops", t,
    ...     t + timedelta(minutes=2), 30.0, CommandStatus.ACCEPTED, "gw", t, t, None, None)
    >>> [s.value for s, _ in history(r)]
    ['pending', 'sent', 'accepted']
    >>> [s.value for s, _ in history(r.__class__(**{**_fields(r), "status": CommandStatus.OFFLINE,
    ...     "sent_at": None}))]
    ['pending', 'offline']
    """
    steps = [(CommandStatus.PENDING, record.requested_at)]
    if record.sent_at is not None:
        steps.append((CommandStatus.SENT, record.sent_at))
    if record.status.terminal:
        steps.append((record.status, record.completed_at or record.sent_at or record.requested_at))
    return steps


def _fields(record: CommandRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def follow(
    pool: AsyncConnectionPool[Any],
    changes: CommandChanges,
    command_id: uuid.UUID,
    wait_s: float,
    pool_timeout_s: float,
) -> AsyncIterator[CommandRecord]:
    """The row at once, then each time its status changes, until it is settled or
    ``wait_s`` passed (nothing if there is no such command)."""
    deadline = time.monotonic() + wait_s
    last: CommandStatus | None = None
    with changes.watch(command_id) as changed:
        while True:
            changed.clear()  # before the read: a change after it wakes the wait below
            async with pool.connection(timeout=pool_timeout_s) as conn:
                record = await get_command(conn, command_id)
            if record is None:
                return
            if record.status is not last:
                last = record.status
                yield record
            left = deadline - time.monotonic()
            if settled(record) or left <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(RECHECK_S, left))


async def latest(
    pool: AsyncConnectionPool[Any],
    changes: CommandChanges,
    command_id: uuid.UUID,
    wait_s: float,
    pool_timeout_s: float,
) -> CommandRecord | None:
    """The row once settled, or as it is after ``wait_s``."""
    last = None
    async for record in follow(pool, changes, command_id, wait_s, pool_timeout_s):
        last = record
    return last
