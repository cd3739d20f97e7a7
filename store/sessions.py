"""Charging sessions (table ``sessions``): the API's reads and the sessions flow's writes.

Reads (psycopg 3, async): listing uses keyset pagination ordered by ``started_at DESC,
session_id DESC`` (backed by ``sessions_started_idx`` / ``sessions_station_started_idx``).
The cursor is opaque to callers: urlsafe base64 of ``{"started_at", "session_id"}`` of
the last row returned.

Writes (sync, one transaction per batch, with the batch's samples: :mod:`store.samples`)
are idempotent under replay (Bytewax sinks are at-least-once): sessions are upserted on
``session_id``; within a batch the last snapshot of a session wins; a closed session is
never reopened by a replayed active snapshot (``WHERE sessions.status <> 'closed' OR
EXCLUDED.status = 'closed'``); there are no write-time columns, so replaying the same
events leaves the table identical.

Performance: one transaction and a handful of statements per batch, whatever its size.
Session snapshots that know their start (all but orphan stops) are binary COPYed into a
staging table and upserted by one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``; the
rare orphan stops (``start_unknown``) keep the per-row merge statement, sent pipelined
(``executemany``). The staging tables are created once per connection
(:class:`store.db.StagingTable`).

A closed snapshot whose start the flow never saw carries ``start_unknown`` in
``quality_reasons`` and no start fields: the upsert then keeps the stored start
(connector, id tag, started_at, meter_start_wh) and computes
``energy_wh = meter_stop_wh - sessions.meter_start_wh`` (source ``station_register``,
quality ``corrected``; NULL with quality ``missing`` if negative). If no row exists yet,
it is inserted with placeholders that keep the columns NOT NULL (connector 0 = the
charge point as a whole, started_at = stopped_at, meter_start_wh = meter_stop_wh),
``energy_wh`` NULL and quality ``missing``; the reason stays on the row, and a replayed
orphan stop leaves such a placeholder row as it is (energy stays NULL).

One active session per connector: an active snapshot closes any other stored active
session on its connector that the flow no longer knows (its state was lost), unless the
snapshot's own session is closed already (a replay); :mod:`store.session_reconcile` has
the rule, migration 0010 the unique index. A session stored as closed for the first time
gets its ``sessions_outbox`` row (:mod:`store.sessions_outbox`) in the same transaction.

The written rows are duck-typed (:class:`SessionSnapshot`) so this module does not
depend on ``flows``; :class:`SessionRecord` is what the reads return.

Size: over 400 lines, half of them SQL: the two merge statements (per row and from staging)
must say the same thing and stay side by side, and a table's reads and writes share one
module throughout ``store/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row

from bus.sessions import ClosedBy, QualityReason
from store.db import StagingTable, Where, last_per_key
from store.samples import STAGING as SAMPLES_STAGING
from store.samples import MeterSample, write_samples
from store.session_reconcile import SUPERSEDE_STALE_ACTIVE
from store.sessions_outbox import INSERT_SESSIONS_OUTBOX
from store.signed_values import SignedValue, write_signed_values

# --------------------------------------------------------------------------- reads

SessionStatus = Literal["active", "closed"]
SESSION_STATUSES: tuple[str, ...] = ("active", "closed")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class InvalidCursorError(ValueError):
    """A pagination cursor that was not produced by :func:`encode_cursor`."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: uuid.UUID
    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    status: str
    started_at: datetime
    stopped_at: datetime | None
    duration_s: float | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: int | None
    energy_source: str | None
    quality: str
    quality_reasons: list[str]
    stop_reason: str | None
    sample_count: int
    closed_by: str | None = None
    station_energy_wh: int | None = None
    smart_meter_energy_wh: int | None = None
    smart_meter_id: str | None = None
    ocpp_version: str | None = None
    # The remote start that produced it (commands.transaction_id, ADR 0010).
    remote_start_command_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Filters for :func:`list_sessions`; ``started_from`` inclusive, ``started_to`` exclusive."""

    charge_point_id: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    status: SessionStatus | None = None

    def __post_init__(self) -> None:
        for name in ("started_from", "started_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if (
            self.started_from is not None
            and self.started_to is not None
            and self.started_from >= self.started_to
        ):
            raise ValueError("'from' must be earlier than 'to'")
        if self.status is not None and self.status not in SESSION_STATUSES:
            raise ValueError(f"status must be one of {', '.join(SESSION_STATUSES)}")


@dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[SessionRecord] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(started_at: datetime, session_id: uuid.UUID) -> str:
    body = json.dumps(
        {"started_at": started_at.isoformat(), "session_id": str(session_id)},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        started_at = datetime.fromisoformat(data["started_at"])
        session_id = uuid.UUID(data["session_id"])
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursorError("invalid pagination cursor") from exc
    if started_at.tzinfo is None:
        raise InvalidCursorError("invalid pagination cursor")
    return started_at, session_id


_COLUMNS = """
    session_id, charge_point_id, connector_id, transaction_id, id_tag, status,
    started_at, stopped_at,
    EXTRACT(EPOCH FROM (stopped_at - started_at))::float8 AS duration_s,
    meter_start_wh, meter_stop_wh, energy_wh, energy_source, quality, quality_reasons,
    stop_reason, sample_count, closed_by, station_energy_wh, smart_meter_energy_wh,
    smart_meter_id, ocpp_version,
    (SELECT c.command_id FROM commands c WHERE c.charge_point_id = sessions.charge_point_id
       AND c.transaction_id = sessions.transaction_id) AS remote_start_command_id
"""


def _record(row: dict[str, Any]) -> SessionRecord:
    row = dict(row)
    row["quality_reasons"] = list(row["quality_reasons"] or [])
    for key in ("started_at", "stopped_at"):
        if row[key] is not None:
            row[key] = row[key].astimezone(UTC)
    return SessionRecord(**row)


async def list_sessions(
    conn: psycopg.AsyncConnection[Any],
    filters: SessionFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> SessionPage:
    """One page of sessions, newest first; ``next_cursor`` is None on the last page.

    Raises :class:`InvalidCursorError` for a bad cursor, ``ValueError`` for a bad limit.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    filters = filters or SessionFilter()
    where = Where()
    where.add_given("charge_point_id = %s", filters.charge_point_id)
    where.add_given("started_at >= %s", filters.started_from)
    where.add_given("started_at < %s", filters.started_to)
    where.add_given("status = %s", filters.status)
    if cursor is not None:
        where.add("(started_at, session_id) < (%s, %s)", *decode_cursor(cursor))
    query = (
        f"SELECT {_COLUMNS} FROM sessions WHERE {where.sql}"
        " ORDER BY started_at DESC, session_id DESC LIMIT %s"
    )
    params = [*where.params, limit + 1]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    items = [_record(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.started_at, last.session_id)
    return SessionPage(items=items, next_cursor=next_cursor)


async def get_session(
    conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID
) -> SessionRecord | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT " + _COLUMNS + " FROM sessions WHERE session_id = %s", (session_id,)
        )
        row = await cur.fetchone()
    return None if row is None else _record(row)


# --------------------------------------------------------------------------- writes


class SessionSnapshot(Protocol):
    @property
    def session_id(self) -> uuid.UUID: ...
    @property
    def charge_point_id(self) -> str: ...
    @property
    def connector_id(self) -> int | None: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def id_tag(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def stopped_at(self) -> datetime | None: ...
    @property
    def meter_start_wh(self) -> int | None: ...
    @property
    def meter_stop_wh(self) -> int | None: ...
    @property
    def last_register_wh(self) -> int | None: ...
    @property
    def energy_wh(self) -> int | None: ...
    @property
    def energy_source(self) -> str | None: ...
    @property
    def quality(self) -> str: ...
    @property
    def quality_reasons(self) -> Sequence[str]: ...
    @property
    def stop_reason(self) -> str | None: ...
    @property
    def sample_count(self) -> int: ...
    @property
    def closed_by(self) -> str | None: ...
    @property
    def station_energy_wh(self) -> int | None: ...
    @property
    def smart_meter_energy_wh(self) -> int | None: ...
    @property
    def smart_meter_id(self) -> str | None: ...
    @property
    def ocpp_version(self) -> str | None: ...


_UPSERT_SESSION = """
INSERT INTO sessions AS s (
    session_id, charge_point_id, connector_id, transaction_id, id_tag, status,
    started_at, stopped_at, meter_start_wh, meter_stop_wh, last_register_wh, energy_wh,
    energy_source, quality, quality_reasons, stop_reason, sample_count, closed_by,
    station_energy_wh, smart_meter_energy_wh, smart_meter_id, ocpp_version
) VALUES (
    %(session_id)s, %(charge_point_id)s, COALESCE(%(connector_id)s, 0), %(transaction_id)s,
    %(id_tag)s, %(status)s, COALESCE(%(started_at)s, %(stopped_at)s), %(stopped_at)s,
    COALESCE(%(meter_start_wh)s, %(meter_stop_wh)s), %(meter_stop_wh)s,
    %(last_register_wh)s, %(energy_wh)s, %(energy_source)s,
    CASE WHEN %(start_unknown)s AND %(status)s = 'closed' THEN 'missing' ELSE %(quality)s END,
    %(quality_reasons)s, %(stop_reason)s, %(sample_count)s, %(closed_by)s,
    %(station_energy_wh)s, %(smart_meter_energy_wh)s, %(smart_meter_id)s, %(ocpp_version)s
)
ON CONFLICT (session_id) DO UPDATE SET
    connector_id = CASE WHEN %(start_unknown)s THEN s.connector_id ELSE EXCLUDED.connector_id END,
    id_tag = CASE WHEN %(start_unknown)s THEN COALESCE(s.id_tag, EXCLUDED.id_tag)
                  ELSE EXCLUDED.id_tag END,
    status = EXCLUDED.status,
    started_at = CASE WHEN %(start_unknown)s THEN s.started_at ELSE EXCLUDED.started_at END,
    stopped_at = EXCLUDED.stopped_at,
    meter_start_wh = CASE WHEN %(start_unknown)s THEN s.meter_start_wh
                          ELSE EXCLUDED.meter_start_wh END,
    meter_stop_wh = EXCLUDED.meter_stop_wh,
    last_register_wh = CASE WHEN %(start_unknown)s THEN s.last_register_wh
                            ELSE EXCLUDED.last_register_wh END,
    energy_wh = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.energy_wh ELSE {merged} END,
    energy_source = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.energy_source
                         WHEN {merged} IS NOT NULL THEN 'station_register' END,
    quality = CASE WHEN NOT %(start_unknown)s THEN EXCLUDED.quality
                   WHEN {merged} IS NOT NULL THEN 'corrected'
                   WHEN EXCLUDED.status = 'closed' THEN 'missing'
                   ELSE EXCLUDED.quality END,
    quality_reasons = EXCLUDED.quality_reasons,
    stop_reason = EXCLUDED.stop_reason,
    sample_count = CASE WHEN %(start_unknown)s
                        THEN GREATEST(s.sample_count, EXCLUDED.sample_count)
                        ELSE EXCLUDED.sample_count END,
    closed_by = EXCLUDED.closed_by,
    station_energy_wh = EXCLUDED.station_energy_wh,
    smart_meter_energy_wh = EXCLUDED.smart_meter_energy_wh,
    smart_meter_id = EXCLUDED.smart_meter_id,
    ocpp_version = COALESCE(EXCLUDED.ocpp_version, s.ocpp_version)
WHERE s.status <> 'closed' OR EXCLUDED.status = 'closed'
""".replace(
    "{merged}",
    """(CASE
        -- the stored row is itself an orphan stop: its start fields are placeholders
        -- unless an earlier merge found a real start (then energy is not NULL)
        WHEN 'start_unknown' = ANY(s.quality_reasons) AND s.energy_wh IS NULL THEN NULL
        WHEN EXCLUDED.meter_stop_wh >= s.meter_start_wh
            THEN EXCLUDED.meter_stop_wh - s.meter_start_wh
        END)""",
)


# The same merge for a snapshot that knows its start (``start_unknown`` false):
# every CASE of _UPSERT_SESSION then takes the EXCLUDED value, so one set-based
# statement from the staging table does what _UPSERT_SESSION does row by row.
STAGING = StagingTable(
    "sessions_staging",
    (
        ("session_id", "uuid"),
        ("charge_point_id", "text"),
        ("connector_id", "int4"),
        ("transaction_id", "text"),
        ("id_tag", "text"),
        ("status", "text"),
        ("started_at", "timestamptz"),
        ("stopped_at", "timestamptz"),
        ("meter_start_wh", "int8"),
        ("meter_stop_wh", "int8"),
        ("last_register_wh", "int8"),
        ("energy_wh", "int8"),
        ("energy_source", "text"),
        ("quality", "text"),
        ("quality_reasons", "text[]"),
        ("stop_reason", "text"),
        ("sample_count", "int4"),
        ("closed_by", "text"),
        ("station_energy_wh", "int8"),
        ("smart_meter_energy_wh", "int8"),
        ("smart_meter_id", "text"),
        ("ocpp_version", "text"),
    ),
)
_UPSERT_SESSIONS_FROM_STAGING = f"""
INSERT INTO sessions AS s ({", ".join(STAGING.column_names)})
SELECT session_id, charge_point_id, COALESCE(connector_id, 0), transaction_id, id_tag, status,
       COALESCE(started_at, stopped_at), stopped_at, COALESCE(meter_start_wh, meter_stop_wh),
       meter_stop_wh, last_register_wh, energy_wh, energy_source, quality, quality_reasons,
       stop_reason, sample_count, closed_by, station_energy_wh, smart_meter_energy_wh,
       smart_meter_id, ocpp_version
FROM {STAGING.name}
ON CONFLICT (session_id) DO UPDATE SET
    connector_id = EXCLUDED.connector_id,
    id_tag = EXCLUDED.id_tag,
    status = EXCLUDED.status,
    started_at = EXCLUDED.started_at,
    stopped_at = EXCLUDED.stopped_at,
    meter_start_wh = EXCLUDED.meter_start_wh,
    meter_stop_wh = EXCLUDED.meter_stop_wh,
    last_register_wh = EXCLUDED.last_register_wh,
    energy_wh = EXCLUDED.energy_wh,
    energy_source = EXCLUDED.energy_source,
    quality = EXCLUDED.quality,
    quality_reasons = EXCLUDED.quality_reasons,
    stop_reason = EXCLUDED.stop_reason,
    sample_count = EXCLUDED.sample_count,
    closed_by = EXCLUDED.closed_by,
    station_energy_wh = EXCLUDED.station_energy_wh,
    smart_meter_energy_wh = EXCLUDED.smart_meter_energy_wh,
    smart_meter_id = EXCLUDED.smart_meter_id,
    ocpp_version = EXCLUDED.ocpp_version
WHERE s.status <> 'closed' OR EXCLUDED.status = 'closed'
"""

# A session closed by the batch (for the outbox: one row, added only in the
# transaction that first stores it as closed), locked against a concurrent writer.
_ALREADY_CLOSED = (
    "SELECT session_id FROM sessions WHERE session_id = ANY(%s) AND status = 'closed' FOR UPDATE"
)


def _start_unknown(row: SessionSnapshot) -> bool:
    return row.meter_start_wh is None and QualityReason.START_UNKNOWN in row.quality_reasons


def _session_params(row: SessionSnapshot) -> dict[str, Any]:
    reasons = list(row.quality_reasons)
    return {
        "session_id": row.session_id,
        "charge_point_id": row.charge_point_id,
        "connector_id": row.connector_id,
        "transaction_id": row.transaction_id,
        "id_tag": row.id_tag,
        "status": row.status,
        "started_at": row.started_at,
        "stopped_at": row.stopped_at,
        "meter_start_wh": row.meter_start_wh,
        "meter_stop_wh": row.meter_stop_wh,
        "last_register_wh": row.last_register_wh,
        "energy_wh": row.energy_wh,
        "energy_source": row.energy_source,
        "quality": row.quality,
        "quality_reasons": reasons,
        "stop_reason": row.stop_reason,
        "sample_count": row.sample_count,
        "closed_by": row.closed_by,
        "station_energy_wh": row.station_energy_wh,
        "smart_meter_energy_wh": row.smart_meter_energy_wh,
        "smart_meter_id": row.smart_meter_id,
        "ocpp_version": row.ocpp_version,
        "start_unknown": row.meter_start_wh is None and QualityReason.START_UNKNOWN in reasons,
    }


def latest_per_session(rows: Iterable[SessionSnapshot]) -> list[SessionSnapshot]:
    """De-duplicate snapshots by session id; the last one of each session wins."""
    return last_per_key(rows, lambda row: row.session_id)


def write_sessions_batch(
    conn: psycopg.Connection[Any],
    sessions: Iterable[SessionSnapshot],
    samples: Iterable[MeterSample],
    signed: Sequence[SignedValue] = (),
) -> None:
    """Upsert session snapshots and insert meter samples (and signed meter values) in
    one transaction; a session stored as closed for the first time gets its
    ``sessions_outbox`` row in the same transaction."""
    session_rows = latest_per_session(sessions)
    sample_rows = samples if isinstance(samples, list) else list(samples)
    if not session_rows and not sample_rows and not signed:
        return
    known = [r for r in session_rows if not _start_unknown(r)]
    orphans = [r for r in session_rows if _start_unknown(r)]
    closing = [r.session_id for r in session_rows if r.status == "closed"]
    missing = [t for t in (SAMPLES_STAGING, STAGING) if t.missing_on(conn)]
    with conn.transaction(), conn.cursor() as cur:
        if missing:
            cur.execute(";".join(t.create for t in missing))
        if closing:
            closing = _newly_closed(cur, closing)
        if sample_rows:
            write_samples(conn, cur, sample_rows)
        if signed:
            write_signed_values(cur, signed)
        superseded = _supersede_stale_active(cur, session_rows)
        if known:
            _copy_sessions(cur, known)
            cur.execute(_UPSERT_SESSIONS_FROM_STAGING)
        if orphans:
            cur.executemany(_UPSERT_SESSION, [_session_params(r) for r in orphans])
        if closing or superseded:
            cur.execute(INSERT_SESSIONS_OUTBOX, (closing + superseded,))
    for table in missing:
        table.created_on(conn)


def _newly_closed(cur: psycopg.Cursor[Any], closing: list[uuid.UUID]) -> list[uuid.UUID]:
    """Which closed snapshots close their session now (locked against a concurrent
    writer of the same session, e.g. during a rebalance)."""
    cur.execute(_ALREADY_CLOSED, (closing,))
    already = {row[0] for row in cur.fetchall()}
    return [sid for sid in closing if sid not in already]


def _copy_sessions(cur: psycopg.Cursor[Any], rows: list[SessionSnapshot]) -> None:
    STAGING.copy_rows(
        cur,
        (
            (
                r.session_id,
                r.charge_point_id,
                r.connector_id,
                r.transaction_id,
                r.id_tag,
                r.status,
                r.started_at,
                r.stopped_at,
                r.meter_start_wh,
                r.meter_stop_wh,
                r.last_register_wh,
                r.energy_wh,
                r.energy_source,
                r.quality,
                list(r.quality_reasons),
                r.stop_reason,
                r.sample_count,
                r.closed_by,
                r.station_energy_wh,
                r.smart_meter_energy_wh,
                r.smart_meter_id,
                r.ocpp_version,
            )
            for r in rows
        ),
    )


def _supersede_stale_active(
    cur: psycopg.Cursor[Any], rows: list[SessionSnapshot]
) -> list[uuid.UUID]:
    """Close the stored active sessions the batch's active ones replace on their
    connector (:mod:`store.session_reconcile`); returns their ids."""
    active = [r for r in rows if r.status == "active" and r.connector_id]
    if not active:
        return []
    cur.execute(
        SUPERSEDE_STALE_ACTIVE,
        {
            "cps": [r.charge_point_id for r in active],
            "connectors": [r.connector_id for r in active],
            "ids": [r.session_id for r in active],
            "batch_ids": [r.session_id for r in rows],
            "closed_by": ClosedBy.NEXT_START,
        },
    )
    return [row[0] for row in cur.fetchall()]
