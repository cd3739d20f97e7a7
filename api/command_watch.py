"""Following a command's row until it is final: for ``?wait=N`` and the server-sent
events of ``/v1/commands/{id}/events``.

The row is read at once and again whenever :class:`api.command_changes.CommandChanges`
says it changed (at least every ``RECHECK_S``), with a deadline; each read takes a
pooled connection only for the read, so a thousand waiting clients do not hold a
thousand connections.
A ``pending`` command past ``expires_at`` counts as settled too: no gateway will send
it any more (a heartbeat marks it expired).

``Until.SESSION`` (``wait_for=session``) waits longer for an accepted remote start:
until its session is known (ADR 0010); any other command, or a remote start that was
not accepted, settles with its outcome as before.

The history is derived from the row's timestamps (``requested_at`` pending,
``sent_at`` sent, ``completed_at`` the outcome, ``linked_at`` the remote start's
``transaction`` and then ``session``), so a stream lists every step once and in order
even when two of them happened between two reads.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.command_changes import RECHECK_S, CommandChanges
from bus.commands import CommandStatus
from ingest.gateway.remote_start_match import REMOTE_START_ACTIONS
from store.commands import CommandRecord, get_command
from store.remote_start_links import with_sessions

LINK_STEPS = ("transaction", "session")


class Until(StrEnum):
    OUTCOME = "outcome"  # the final status
    SESSION = "session"  # an accepted remote start: its session too


def awaits_session(record: CommandRecord) -> bool:
    """An accepted remote start whose session is not known yet."""
    return (
        record.action in REMOTE_START_ACTIONS
        and record.status is CommandStatus.ACCEPTED
        and record.session_id is None
    )


def settled(
    record: CommandRecord, now: datetime | None = None, until: Until = Until.OUTCOME
) -> bool:
    if record.status.terminal:
        return until is Until.OUTCOME or not awaits_session(record)
    return record.status is CommandStatus.PENDING and record.expires_at <= (
        now or datetime.now(UTC)
    )


def history(record: CommandRecord, *, links: bool = True) -> list[tuple[str, datetime]]:
    """The steps the command went through, oldest first: its statuses, then (``links``)
    for a linked remote start ``transaction`` and (once stored) ``session``.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> r = CommandRecord(uuid.UUID(int=1), "CP", "Reset", {}, "1.6", "ops", t,
    ...     t + timedelta(minutes=2), 30.0, CommandStatus.ACCEPTED, "gw", t, t, None, None)
    >>> [str(s) for s, _ in history(r)]
    ['pending', 'sent', 'accepted']
    >>> [str(s) for s, _ in history(r.__class__(**{**_fields(r), "status": CommandStatus.OFFLINE,
    ...     "sent_at": None}))]
    ['pending', 'offline']
    >>> [str(s) for s, _ in history(r.__class__(**{**_fields(r), "transaction_id": "7",
    ...     "linked_at": t, "session_id": uuid.UUID(int=2)}))]
    ['pending', 'sent', 'accepted', 'transaction', 'session']
    """
    steps: list[tuple[str, datetime]] = [(CommandStatus.PENDING, record.requested_at)]
    if record.sent_at is not None:
        steps.append((CommandStatus.SENT, record.sent_at))
    if record.status.terminal:
        steps.append((record.status, record.completed_at or record.sent_at or record.requested_at))
    if links and record.transaction_id is not None:
        linked = record.linked_at or steps[-1][1]
        steps.append(("transaction", linked))
        if record.session_id is not None:
            steps.append(("session", linked))
    return steps


def _fields(record: CommandRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def read(
    pool: AsyncConnectionPool[Any], command_id: uuid.UUID, pool_timeout_s: float
) -> CommandRecord | None:
    """The command with its session, if any."""
    async with pool.connection(timeout=pool_timeout_s) as conn:
        record = await get_command(conn, command_id)
        return None if record is None else (await with_sessions(conn, [record]))[0]


async def follow(
    pool: AsyncConnectionPool[Any],
    changes: CommandChanges,
    command_id: uuid.UUID,
    wait_s: float,
    pool_timeout_s: float,
    until: Until = Until.OUTCOME,
) -> AsyncIterator[CommandRecord]:
    """The row at once, then each time its status or link changes, until it is settled
    or ``wait_s`` passed (nothing if there is no such command)."""
    deadline = time.monotonic() + wait_s
    last: tuple[Any, ...] | None = None
    with changes.watch(command_id) as changed:
        while True:
            changed.clear()  # before the read: a change after it wakes the wait below
            record = await read(pool, command_id, pool_timeout_s)
            if record is None:
                return
            seen = (record.status, record.transaction_id, record.session_id)
            if seen != last:
                last = seen
                yield record
            left = deadline - time.monotonic()
            if settled(record, until=until) or left <= 0:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(RECHECK_S, left))


async def latest(
    pool: AsyncConnectionPool[Any],
    changes: CommandChanges,
    command_id: uuid.UUID,
    wait_s: float,
    pool_timeout_s: float,
    until: Until = Until.OUTCOME,
) -> CommandRecord | None:
    """The row once settled, or as it is after ``wait_s``."""
    last = None
    async for record in follow(pool, changes, command_id, wait_s, pool_timeout_s, until):
        last = record
    return last
