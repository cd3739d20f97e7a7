"""SQL of remote commands (tables ``commands``, ``gateways``, ``gateway_offsets``,
``command_deadletters``; ``station_connections`` is read for routing).

The row is also the outbox of its ``CommandResult`` (migration 0009): the result is
published after the terminal update and then marked (:func:`mark_published`); any
replica's heartbeat publishes the terminal rows left unmarked
(:func:`publish_unpublished`).

Every status change is a conditional UPDATE, so replicas racing for the same command
cannot both act on it: :func:`claim` moves ``pending`` to what the replica decided
(``sent``, or straight to ``expired``/``offline``/``failed``), :func:`complete` moves
``sent`` to the station's outcome. Each returns the row it changed, or ``None`` when
another replica (or an earlier run) got there first.

:func:`submit_command` is what producers of commands (API, smart charging) call:
the row first, then the message on ``ocpp.commands``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bus.commands import (
    Command,
    CommandResult,
    CommandStatus,
    decode_json,
    encode_command,
    encode_json,
)
from bus.producer import Producer, PublishError
from bus.topics import Topics
from store.db import AsyncDb, execute


def _jsonb(value: Any) -> Jsonb | None:
    if value is None:
        return None
    return Jsonb(value, dumps=lambda v: encode_json(v).decode())


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: uuid.UUID
    charge_point_id: str
    action: str
    payload: dict[str, Any]
    ocpp_version: str | None
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    timeout_s: float
    status: CommandStatus
    gateway_id: str | None
    sent_at: datetime | None
    completed_at: datetime | None
    response: dict[str, Any] | None
    error: str | None
    # A remote start's transaction once matched (ADR 0010); its session once stored.
    transaction_id: str | None = None
    linked_at: datetime | None = None
    session_id: uuid.UUID | None = None

    def to_result(self) -> CommandResult:
        assert self.completed_at is not None, "only a terminal command has a result"
        code = None
        if (
            self.response is not None
            and "errorCode" in self.response
            and self.status in (CommandStatus.FAILED,)
        ):
            code = str(self.response["errorCode"])
        return CommandResult(
            command_id=self.command_id,
            charge_point_id=self.charge_point_id,
            action=self.action,
            status=self.status,
            requested_by=self.requested_by,
            requested_at=self.requested_at,
            completed_at=self.completed_at,
            ocpp_version=self.ocpp_version,
            gateway_id=self.gateway_id,
            sent_at=self.sent_at,
            response=self.response,
            error_code=code,
            error=self.error,
        )


_COLUMNS = (
    "command_id, charge_point_id, action, payload::text, ocpp_version, requested_by, "
    "requested_at, expires_at, timeout_s, status, gateway_id, sent_at, completed_at, "
    "response::text, error, transaction_id, linked_at"
)


def _record(row: tuple[Any, ...]) -> CommandRecord:
    values = list(row)
    values[3] = decode_json(values[3])  # exact decimals, not psycopg's floats
    values[9] = CommandStatus(values[9])
    values[13] = None if values[13] is None else decode_json(values[13])
    return CommandRecord(*values)


def command_values(command: Command) -> tuple[Any, ...]:
    """The command's own columns, in the order ``command_id, charge_point_id, action,
    payload, ocpp_version, requested_by, requested_at, expires_at, timeout_s``."""
    return (
        command.command_id,
        command.charge_point_id,
        command.action,
        _jsonb(command.payload),
        command.ocpp_version,
        command.requested_by,
        command.requested_at,
        command.expires_at,
        command.timeout_s,
    )


async def insert_if_missing(db: AsyncDb, command: Command) -> bool:
    """Store a pending command unless its id is known; True if inserted.

    The row counts as published (it was read from ``ocpp.commands``, or
    :func:`submit_command` publishes it right after); the API's rows that still wait
    for the broker are written by ``store.command_queue``."""
    rows = await execute(
        db,
        """
        INSERT INTO commands (command_id, charge_point_id, action, payload, ocpp_version,
                              requested_by, requested_at, expires_at, timeout_s, published_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (command_id) DO NOTHING
        RETURNING 1
        """,
        command_values(command),
    )
    return bool(rows)


async def get_command(db: AsyncDb, command_id: uuid.UUID) -> CommandRecord | None:
    rows = await execute(
        db, f"SELECT {_COLUMNS} FROM commands WHERE command_id = %s", (command_id,)
    )
    return _record(rows[0]) if rows else None


async def claim(
    db: AsyncDb,
    command_id: uuid.UUID,
    gateway_id: str,
    status: CommandStatus,
    *,
    ocpp_version: str | None = None,
    error: str | None = None,
) -> CommandRecord | None:
    """``pending`` -> ``status`` for this replica; None if the command is not pending.

    ``sent`` sets ``sent_at``; a terminal status sets ``completed_at`` (never sent).
    """
    sql = f"""
        UPDATE commands SET status = %s, gateway_id = %s,
            ocpp_version = COALESCE(%s, ocpp_version), error = %s,
            sent_at = CASE WHEN %s THEN now() END,
            completed_at = CASE WHEN %s THEN NULL ELSE now() END,
            updated_at = now()
        WHERE command_id = %s AND status = 'pending'
        RETURNING {_COLUMNS}
        """
    sent = status is CommandStatus.SENT
    rows = await execute(
        db, sql, (str(status), gateway_id, ocpp_version, error, sent, sent, command_id)
    )
    return _record(rows[0]) if rows else None


async def complete(
    db: AsyncDb,
    command_id: uuid.UUID,
    status: CommandStatus,
    *,
    response: dict[str, Any] | None = None,
    error: str | None = None,
) -> CommandRecord | None:
    """``sent`` -> a terminal ``status``; None if the command is not (any more) ``sent``."""
    assert status.terminal
    rows = await execute(
        db,
        f"""
        UPDATE commands SET status = %s, response = %s, error = %s, completed_at = now(),
            updated_at = now()
        WHERE command_id = %s AND status = 'sent'
        RETURNING {_COLUMNS}
        """,
        (str(status), _jsonb(response), error, command_id),
    )
    return _record(rows[0]) if rows else None


async def expire_overdue(db: AsyncDb, gateway_id: str, limit: int = 100) -> list[CommandRecord]:
    """Pending commands past ``expires_at`` (nobody sent them in time) -> ``expired``."""
    rows = await execute(
        db,
        f"""
        UPDATE commands SET status = 'expired', gateway_id = %s, completed_at = now(),
            updated_at = now(), error = 'expired before a gateway could send it'
        WHERE command_id IN (
            SELECT command_id FROM commands WHERE status = 'pending' AND expires_at < now()
            ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)
          AND status = 'pending'
        RETURNING {_COLUMNS}
        """,
        (gateway_id, limit),
    )
    return [_record(r) for r in rows]


async def abandon_orphaned(db: AsyncDb, grace_s: float, limit: int = 100) -> list[CommandRecord]:
    """``sent`` commands without an outcome long after their timeout -> ``failed``.

    A live replica records ``timed_out`` within ``timeout_s``; a row still ``sent``
    ``grace_s`` later belongs to a replica that died (or lost its database) mid-call.
    """
    rows = await execute(
        db,
        f"""
        UPDATE commands SET status = 'failed', completed_at = now(), updated_at = now(),
            error = 'no outcome recorded by gateway ' || coalesce(gateway_id, '?')
                    || ' (stopped while waiting for the answer?)'
        WHERE command_id IN (
            SELECT command_id FROM commands
            WHERE status = 'sent' AND sent_at + make_interval(secs => timeout_s + %s) < now()
            LIMIT %s FOR UPDATE SKIP LOCKED)
          AND status = 'sent'
        RETURNING {_COLUMNS}
        """,
        (grace_s, limit),
    )
    return [_record(r) for r in rows]


async def mark_published(db: AsyncDb, command_id: uuid.UUID) -> None:
    """The command's result is on ``ocpp.command-results`` (migration 0009)."""
    await execute(
        db,
        "UPDATE commands SET result_published_at = now() "
        "WHERE command_id = %s AND result_published_at IS NULL",
        (command_id,),
    )


async def publish_unpublished(
    pool: AsyncConnectionPool[Any],
    publish: Callable[[CommandRecord], Awaitable[None]],
    older_than_s: float,
    limit: int = 100,
) -> list[CommandRecord]:
    """Publish the results of terminal commands completed more than ``older_than_s``
    ago that were never confirmed published (their replica died between the update
    and the publish, or the broker was down past its retries), and mark them.

    The rows stay locked (``FOR UPDATE SKIP LOCKED``) while they are published, so
    concurrent replicas take different rows. A publish that fails stops the round;
    the rows published so far are marked, the rest wait for the next heartbeat.
    """
    done: list[CommandRecord] = []
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"""
            SELECT {_COLUMNS} FROM commands
            WHERE completed_at IS NOT NULL AND result_published_at IS NULL
              AND completed_at < now() - make_interval(secs => %s)
            ORDER BY completed_at LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (older_than_s, limit),
        )
        for row in await cur.fetchall():
            record = _record(row)
            try:
                await publish(record)
            except (PublishError, TimeoutError, OSError):
                break
            done.append(record)
        if done:
            await conn.execute(
                "UPDATE commands SET result_published_at = now() WHERE command_id = ANY(%s)",
                ([r.command_id for r in done],),
            )
    return done


async def submit_command(
    db: AsyncDb,
    producer: Producer,
    topics: Topics,
    command: Command,
    *,
    publish_timeout_s: float = 10.0,
) -> bool:
    """Store ``command`` (pending) and publish it on ``ocpp.commands``.

    Idempotent per command id: returns False (nothing published) when the id is
    already known. If Kafka does not confirm, the row is marked ``failed`` and
    ``PublishError`` is raised.
    """
    import asyncio

    if not await insert_if_missing(db, command):
        return False
    try:
        await asyncio.wait_for(
            producer.publish(
                topics.ocpp_commands, command.charge_point_id.encode(), encode_command(command)
            ),
            publish_timeout_s,
        )
    except (PublishError, TimeoutError) as exc:
        await claim(db, command.command_id, "api", CommandStatus.FAILED, error=f"not queued: {exc}")
        raise PublishError(f"command {command.command_id} not queued: {exc}") from exc
    return True


# ------------------------------------------------------------------ replicas, routing


async def heartbeat(db: AsyncDb, gateway_id: str) -> None:
    await execute(
        db,
        """
        INSERT INTO gateways (gateway_id) VALUES (%s)
        ON CONFLICT (gateway_id) DO UPDATE SET last_heartbeat = now()
        """,
        (gateway_id,),
    )


async def forget_gateway(db: AsyncDb, gateway_id: str) -> None:
    """A replica that stops cleanly is not live any more (holds nothing)."""
    await execute(db, "DELETE FROM gateways WHERE gateway_id = %s", (gateway_id,))


async def live_holder(db: AsyncDb, charge_point_id: str, grace_s: float) -> str | None:
    """The live replica holding the station (by ``station_connections``), if any."""
    rows = await execute(
        db,
        """
        SELECT sc.gateway_id FROM station_connections sc
        JOIN gateways g ON g.gateway_id = sc.gateway_id
        WHERE sc.charge_point_id = %s
          AND g.last_heartbeat > now() - make_interval(secs => %s)
        """,
        (charge_point_id, grace_s),
    )
    return str(rows[0][0]) if rows else None


async def load_offsets(db: AsyncDb, gateway_id: str, topic: str) -> dict[int, int]:
    rows = await execute(
        db,
        "SELECT partition, next_offset FROM gateway_offsets WHERE gateway_id = %s AND topic = %s",
        (gateway_id, topic),
    )
    return {int(p): int(o) for p, o in rows}


async def save_offsets(db: AsyncDb, gateway_id: str, topic: str, offsets: dict[int, int]) -> None:
    for partition, offset in sorted(offsets.items()):
        await execute(
            db,
            """
            INSERT INTO gateway_offsets (gateway_id, topic, partition, next_offset)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (gateway_id, topic, partition) DO UPDATE
                SET next_offset = EXCLUDED.next_offset, updated_at = now()
            """,
            (gateway_id, topic, partition, offset),
        )


async def claim_deadletter(
    db: AsyncDb, topic: str, partition: int, offset: int, gateway_id: str, reason: str
) -> bool:
    """True for the one replica that should dead-letter this message."""
    rows = await execute(
        db,
        """
        INSERT INTO command_deadletters (topic, partition, "offset", gateway_id, reason)
        VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1
        """,
        (topic, partition, offset, gateway_id, reason[:1000]),
    )
    return bool(rows)
