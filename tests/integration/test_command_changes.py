"""Waking waiters on a command's change, on the real database: the ``commands_changed``
trigger's notification reaches :class:`api.command_changes.CommandChanges`, only for the
steps a caller waits for, and the listener comes back (waking everyone) after its
connection is killed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from api.command_changes import CommandChanges
from bus.commands import CommandStatus, new_command
from store import commands as store
from tests.support.polling import apoll

pytestmark = pytest.mark.integration


@pytest.fixture
async def changes(clean_db: str) -> AsyncIterator[CommandChanges]:
    listener = CommandChanges(clean_db)
    listener.start()
    async with asyncio.timeout(20):
        await listener.listening.wait()
    yield listener
    await listener.aclose()


async def queued(db: psycopg.AsyncConnection[tuple[object, ...]]) -> uuid.UUID:
    command = new_command("CP-W1", "Reset", {"type": "Soft"}, requested_by="test")
    assert await store.insert_if_missing(db, command)
    return command.command_id


async def test_a_status_step_wakes_the_commands_waiters_and_no_one_else(
    clean_db: str, changes: CommandChanges
) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as db:
        watched, other = await queued(db), await queued(db)
        with changes.watch(watched) as woken, changes.watch(other) as bystander:
            assert changes.waiting() == 2
            # A write that is not a step (the row's bookkeeping) wakes nobody...
            await db.execute(
                "UPDATE commands SET updated_at = now() WHERE command_id = %s", (watched,)
            )
            # ...and a step does, once the database delivers it.
            assert await store.claim(db, watched, "gw-1", CommandStatus.SENT) is not None
            await apoll(lambda: woken.is_set(), bool, 10, "the sent step's notification")
            assert not bystander.is_set()
            woken.clear()
            await store.complete(
                db, watched, CommandStatus.ACCEPTED, response={"status": "Accepted"}
            )
            await apoll(lambda: woken.is_set(), bool, 10, "the outcome's notification")
            assert not bystander.is_set()
        assert changes.waiting() == 0


async def test_the_listener_reconnects_and_wakes_every_waiter(
    clean_db: str, changes: CommandChanges
) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as db:
        command_id = await queued(db)
        with changes.watch(command_id) as woken:
            # This listener's connection (the database is shared with other tests' APIs).
            listener = await (
                await db.execute(
                    "SELECT query FROM pg_stat_activity WHERE pid = %s", (changes.backend_pid,)
                )
            ).fetchall()
            assert listener == [("LISTEN chargeflow_commands",)]
            killed = await (
                await db.execute("SELECT pg_terminate_backend(%s)", (changes.backend_pid,))
            ).fetchall()
            assert killed == [(True,)]
            # What changed while nobody listened is unknown: everyone re-reads.
            await apoll(lambda: woken.is_set(), bool, 30, "the wake-up after reconnecting")
            woken.clear()
            await apoll(lambda: changes.listening.is_set(), bool, 30, "listening again")
            await store.claim(db, command_id, "gw-1", CommandStatus.SENT)
            await apoll(lambda: woken.is_set(), bool, 10, "a notification after reconnecting")
