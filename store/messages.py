"""The station's OCPP message history (table ``ocpp_messages``, migration 0024): the
messages flow's writes (sync psycopg 3, one transaction per batch), its retention, and
the API's read, which adds the commands the CSMS sent (``commands``) to the same
history.

* :func:`write_messages`: insert, ``ON CONFLICT DO NOTHING`` on ``(message_key,
  received_at)``: a replay of ``ocpp.events`` writes each envelope once.
* :func:`apply_retention`: TimescaleDB: the hypertable's retention policy set to the
  setting (replaced when it differs); plain PostgreSQL: delete the rows older than it.
* :func:`list_messages`: newest first, station messages (``station_to_csms``: the
  CALL and the gateway's answer) and commands (``csms_to_station``: the command, the
  station's answer, its status) in one order by (time, key); payloads of commands are
  masked as the flow masks what it stores (``bus.redaction``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bus.commands import decode_json, encode_json
from bus.redaction import redact_ocpp
from store.db import AsyncDb, StorageMode, Where, execute

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
_KEY_NAMESPACE = uuid.UUID("5b0d9a52-8f0e-4c57-a7a3-2f6d1c0e9b41")


class Direction(StrEnum):
    STATION_TO_CSMS = "station_to_csms"
    CSMS_TO_STATION = "csms_to_station"


def message_key(message_id: str) -> uuid.UUID:
    """The envelope id as a UUID: itself when it is 32 hex digits (the gateway's ids,
    ``bus.envelope.new_message_id``), else a UUIDv5 of it.

    >>> message_key("0190f3c2a1b27abc8def0123456789ab").hex
    '0190f3c2a1b27abc8def0123456789ab'
    >>> message_key("m1") == message_key("m1") != message_key("m2")
    True
    """
    try:
        if len(message_id) == 32:
            return uuid.UUID(hex=message_id)
    except ValueError:
        pass
    return uuid.uuid5(_KEY_NAMESPACE, message_id)


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One CALL a station sent, masked (``bus.redaction``), as the flow writes it."""

    message_id: str
    charge_point_id: str
    received_at: datetime
    action: str | None
    ocpp_version: str | None
    unique_id: str | None
    payload: dict[str, Any]
    response: dict[str, Any] | None


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=lambda v: encode_json(v).decode())


def write_messages(conn: psycopg.Connection[Any], rows: list[MessageRow]) -> None:
    """Insert ``rows`` (each once: replays skip what is there), in one transaction."""
    if not rows:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO ocpp_messages (message_id, message_key, charge_point_id, received_at,
                action, ocpp_version, unique_id, payload, response)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            """,
            [
                (
                    r.message_id,
                    message_key(r.message_id),
                    r.charge_point_id,
                    r.received_at,
                    r.action,
                    r.ocpp_version,
                    r.unique_id,
                    _jsonb(r.payload),
                    _jsonb(r.response),
                )
                for r in rows
            ],
        )


def apply_retention(conn: psycopg.Connection[Any], keep: timedelta) -> int:
    """Keep ``keep`` of history (by ``received_at``); returns the rows deleted (plain
    PostgreSQL) or 0 (TimescaleDB: its retention job drops whole chunks)."""
    mode = conn.execute("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'").fetchone()
    if mode is not None and mode[0] == StorageMode.TIMESCALEDB:
        same = conn.execute(
            "SELECT 1 FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_name = 'ocpp_messages'"
            " AND (config->>'drop_after')::interval = %s::interval",
            (keep,),
        ).fetchone()
        if same is None:
            with conn.transaction():
                conn.execute("SELECT remove_retention_policy('ocpp_messages', if_exists => true)")
                conn.execute("SELECT add_retention_policy('ocpp_messages', %s::interval)", (keep,))
        return 0
    cur = conn.execute(
        "DELETE FROM ocpp_messages WHERE received_at < now() - %s::interval", (keep,)
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class MessageFilter:
    station_id: str
    actions: tuple[str, ...] = ()
    direction: Direction | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    key: uuid.UUID
    message_id: str
    direction: Direction
    at: datetime
    action: str | None
    ocpp_version: str | None
    unique_id: str | None
    payload: Any
    response: Any
    status: str | None
    error: str | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessagePage:
    items: list[MessageRecord]
    next_after: tuple[datetime, uuid.UUID] | None


def _branch(
    table: str, columns: str, time: str, key: str, filters: MessageFilter, after: Any, limit: int
) -> tuple[str, list[Any]]:
    where = Where()
    where.add("charge_point_id = %s", filters.station_id)
    if filters.actions:
        where.add("action = ANY(%s)", list(filters.actions))
    where.add_given(f"{time} >= %s", filters.since)
    where.add_given(f"{time} < %s", filters.until)
    if after is not None:
        where.add(f"({time}, {key}) < (%s, %s)", *after)
    sql = (
        f"(SELECT {columns} FROM {table} WHERE {where.sql} "
        f"ORDER BY {time} DESC, {key} DESC LIMIT %s)"
    )
    return sql, [*where.params, limit]


_STATION_COLUMNS = (
    "message_key AS key, message_id AS id, 'station_to_csms' AS direction, received_at AS at, "
    "action, ocpp_version, unique_id, payload::text AS payload, response::text AS response, "
    "NULL::text AS status, NULL::text AS error, NULL::timestamptz AS completed_at"
)
_COMMAND_COLUMNS = (
    "command_id AS key, command_id::text AS id, 'csms_to_station' AS direction, "
    "requested_at AS at, action, ocpp_version, NULL::text AS unique_id, "
    "payload::text AS payload, response::text AS response, status, error, completed_at"
)


def _record(row: tuple[Any, ...]) -> MessageRecord:
    key, mid, direction, at, action, version, unique_id, payload, response, *rest = row
    return MessageRecord(
        key,
        mid,
        Direction(direction),
        at,
        action,
        version,
        unique_id,
        redact_ocpp(decode_json(payload)),
        None if response is None else redact_ocpp(decode_json(response)),
        *rest,
    )


async def list_messages(
    db: AsyncDb,
    filters: MessageFilter,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> MessagePage:
    """Newest first (ties by key), ``after`` the previous page's last row."""
    branches: list[str] = []
    params: list[Any] = []
    for direction, table, columns, time, key in (
        (
            Direction.STATION_TO_CSMS,
            "ocpp_messages",
            _STATION_COLUMNS,
            "received_at",
            "message_key",
        ),
        (Direction.CSMS_TO_STATION, "commands", _COMMAND_COLUMNS, "requested_at", "command_id"),
    ):
        if filters.direction in (None, direction):
            sql, values = _branch(table, columns, time, key, filters, after, limit + 1)
            branches.append(sql)
            params.extend(values)
    rows = await execute(
        db,
        f"SELECT * FROM ({' UNION ALL '.join(branches)}) m ORDER BY at DESC, key DESC LIMIT %s",
        (*params, limit + 1),
    )
    items = [_record(r) for r in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return MessagePage(items, None if last is None else (last.at, last.key))
