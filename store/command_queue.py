"""Commands the API queues (table ``commands``, columns of migration 0022): the row
with its idempotency key first, then the message; the rows the broker did not take
(``published_at`` NULL) are published by a gateway heartbeat (:func:`publish_queued`).
Reading for the API: one command, a filtered page, the station's OCPP version.

The lifecycle updates themselves are in :mod:`store.commands`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from bus.commands import Command, CommandStatus
from bus.producer import PublishError
from store.commands import _COLUMNS, CommandRecord, _record, command_values
from store.db import AsyncDb, execute

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Who asked (the API key) with which ``Idempotency-Key``, and a hash of the request."""

    api_key_id: str
    key: str | None
    request_hash: str


@dataclass(frozen=True, slots=True)
class Queued:
    record: CommandRecord
    created: bool  # False: the key's first command (nothing new was stored)
    request_hash: str | None  # the stored command's request hash


async def queue_command(
    db: AsyncDb, command: Command, who: Idempotency, *, remote_start_id: int | None = None
) -> Queued:
    """Store ``command`` as pending and not yet published, unless ``who.key`` already
    names a command of this API key: then that one (and ``created`` False)."""
    rows = await execute(
        db,
        f"""
        INSERT INTO commands (command_id, charge_point_id, action, payload, ocpp_version,
            requested_by, requested_at, expires_at, timeout_s, api_key_id, idempotency_key,
            request_hash, remote_start_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL
        DO NOTHING
        RETURNING {_COLUMNS}
        """,
        (*command_values(command), who.api_key_id, who.key, who.request_hash, remote_start_id),
    )
    if rows:
        return Queued(_record(rows[0]), True, who.request_hash)
    assert who.key is not None, "only an idempotency key can conflict"
    found = await find_by_key(db, who.api_key_id, who.key)
    assert found is not None, "the conflicting row exists (commands are not deleted)"
    return Queued(found[0], False, found[1])


async def find_by_key(
    db: AsyncDb, api_key_id: str, key: str
) -> tuple[CommandRecord, str | None] | None:
    """The command an API key queued with this ``Idempotency-Key``, and its request hash."""
    rows = await execute(
        db,
        f"SELECT {_COLUMNS}, request_hash FROM commands "
        "WHERE api_key_id = %s AND idempotency_key = %s",
        (api_key_id, key),
    )
    return (_record(rows[0][:-1]), rows[0][-1]) if rows else None


async def mark_queued_published(db: AsyncDb, command_id: uuid.UUID) -> None:
    await execute(
        db,
        "UPDATE commands SET published_at = now() WHERE command_id = %s AND published_at IS NULL",
        (command_id,),
    )


def command_of(record: CommandRecord) -> Command:
    """The message of a stored command."""
    return Command(
        command_id=record.command_id,
        charge_point_id=record.charge_point_id,
        action=record.action,
        payload=record.payload,
        requested_by=record.requested_by,
        requested_at=record.requested_at,
        expires_at=record.expires_at,
        timeout_s=record.timeout_s,
        ocpp_version=record.ocpp_version,
    )


async def publish_queued(
    pool: AsyncConnectionPool[Any],
    publish: Callable[[Command], Awaitable[None]],
    older_than_s: float,
    limit: int = 100,
) -> list[CommandRecord]:
    """Publish pending commands the API stored but could not hand to the broker
    (``published_at`` NULL for more than ``older_than_s``; not expired: those the
    heartbeat expires), and mark them. Rows locked while published (``SKIP LOCKED``:
    replicas take different rows); a failed publish ends the round. Publishing twice
    (an API publish that was only slow) is harmless: routing is idempotent."""
    done: list[CommandRecord] = []
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"""
            SELECT {_COLUMNS} FROM commands
            WHERE published_at IS NULL AND status = 'pending' AND expires_at > now()
              AND requested_at < now() - make_interval(secs => %s)
            ORDER BY requested_at LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (older_than_s, limit),
        )
        for row in await cur.fetchall():
            record = _record(row)
            try:
                await publish(command_of(record))
            except (PublishError, TimeoutError, OSError):
                break
            done.append(record)
        if done:
            await conn.execute(
                "UPDATE commands SET published_at = now() WHERE command_id = ANY(%s)",
                ([r.command_id for r in done],),
            )
    return done


async def station_ocpp_version(db: AsyncDb, charge_point_id: str) -> tuple[bool, str | None]:
    """(the station is known, the OCPP version it last spoke: set by the gateway on
    connect and by BootNotification)."""
    rows = await execute(
        db, "SELECT ocpp_version FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    return (True, rows[0][0]) if rows else (False, None)


# The ids chargeflow draws for a command's payload (migrations 0022, 0029, 0027).
SEQUENCES = {
    "remote_start": "command_remote_start_ids",  # 2.0.1 remoteStartId
    "request": "command_request_ids",  # 2.0.1 requestId (GetLog)
    "reservation": "command_reservation_ids",  # ReserveNow reservation id
    "firmware": "firmware_request_ids",  # 2.0.1 UpdateFirmware requestId
}


async def next_id(db: AsyncDb, kind: str) -> int:
    """The next id of ``kind`` (a key of ``SEQUENCES``)."""
    rows = await execute(db, f"SELECT nextval('{SEQUENCES[kind]}')", ())
    return int(rows[0][0])


async def next_remote_start_id(db: AsyncDb) -> int:
    return await next_id(db, "remote_start")


async def session_transaction(db: AsyncDb, session_id: uuid.UUID) -> tuple[str, str, str] | None:
    """(charge point id, transaction id, status) of a session, if known."""
    rows = await execute(
        db,
        "SELECT charge_point_id, transaction_id, status FROM sessions WHERE session_id = %s",
        (session_id,),
    )
    return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None


@dataclass(frozen=True, slots=True)
class CommandFilter:
    station_id: str | None = None
    status: CommandStatus | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CommandPage:
    items: list[CommandRecord]
    next_after: tuple[datetime, uuid.UUID] | None


async def list_commands(
    db: AsyncDb,
    filters: CommandFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> CommandPage:
    """Newest ``requested_at`` first (ties by command id), ``after`` the previous page's
    last row."""
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    for column, value in (
        ("charge_point_id =", filters.station_id),
        ("status =", None if filters.status is None else str(filters.status)),
        ("action =", filters.action),
        ("requested_at >=", filters.since),
        ("requested_at <", filters.until),
    ):
        if value is not None:
            where.append(f"{column} %s")
            params.append(value)
    if after is not None:
        where.append("(requested_at, command_id) < (%s, %s)")
        params.extend(after)
    rows = await execute(
        db,
        f"SELECT {_COLUMNS} FROM commands WHERE {' AND '.join(where)} "
        "ORDER BY requested_at DESC, command_id DESC LIMIT %s",
        (*params, limit + 1),
    )
    items = [_record(r) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return CommandPage(items, None if last is None else (last.requested_at, last.command_id))
